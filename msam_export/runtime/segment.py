"""``segment``: challenge-format inputs -> one ``segs`` npz per case plus ``timings.csv``."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import data_dirs, list_cases, load_case, save_segmentation
from ..errors import MsamError
from ..files import PathLike, atomic_file
from ..system import host_and_cpu
from .load import DEFAULT_CACHE, Model, open_model
from .predictor import Predictor

TIMINGS_FILE = "timings.csv"
CSV_FIELDS = (
    "case",
    "modality",
    "dims",
    "boxes",
    "encoder_calls",
    "encoder_ms",
    "decoder_calls",
    "decoder_ms",
    "pre_ms",
    "post_ms",
    "wall_ms",
    "propagation",
    "host",
    "cpu",
    "status",
)


@dataclass
class SegmentRun:
    """What ``segment`` wrote: the output dir, the timing CSV, one row per case."""

    output: Path
    timings_csv: Path
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "ok"]


def segment_case(predictor: Predictor, path: Path, output_dir: Path) -> dict[str, Any]:
    """Segments one case into ``output_dir``; a bad case comes back as a row with its error."""
    try:
        case = load_case(path)
        result = predictor.segment(case)
        save_segmentation(output_dir / path.name, result.segs, case.spacing)
    except (MsamError, ValueError) as exc:
        return {"case": path.name, "status": f"error: {exc}"}
    t = result.timings
    return {
        "case": path.name,
        "modality": case.modality,
        "dims": "3D" if case.is_3d else "2D",
        "boxes": len(case.boxes),
        "encoder_calls": t.encoder_calls,
        "encoder_ms": round(t.encoder_ms, 1),
        "decoder_calls": t.decoder_calls,
        "decoder_ms": round(t.decoder_ms, 1),
        "pre_ms": round(t.pre_ms, 1),
        "post_ms": round(t.post_ms, 1),
        "wall_ms": round(result.wall_ms, 1),
        "propagation": str(predictor.propagation) if case.is_3d else "",
        **host_and_cpu(),
        "status": "ok",
    }


def write_timings(path: PathLike, rows: list[dict[str, Any]]) -> None:
    """Writes the timing CSV atomically."""
    with atomic_file(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def segment(
    model: Model | PathLike,
    inputs: PathLike,
    output: PathLike,
    *,
    threads: int | None = None,
    precision: str = "f32",
    cache_dir: PathLike | None = DEFAULT_CACHE,
    variant: str | None = None,
    trust_pickle: bool = False,
    propagation: str | None = None,
    timings_csv: PathLike | None = None,
    on_case: Callable[[str], None] | None = None,
    cluster: Any = None,
) -> SegmentRun:
    """Segments every ``*.npz`` case of ``inputs`` (a dir of inputs, or a challenge root with
    ``imgs/``) into ``output`` (same file names) and writes ``timings.csv`` there (or at
    ``timings_csv``). A bad case is reported in its row and the run goes on.

    ``model`` is an opened :class:`Model` or a path for :func:`open_model` (with ``threads``,
    ``precision``, ``cache_dir``, ``variant``, ``trust_pickle``); ``cluster`` a Ray cluster
    (``msam_export.cluster``) whose workers open it and share the cases."""
    cases = list_cases(data_dirs(inputs)[0])
    output = Path(output)
    options = {"threads": threads, "precision": precision, "cache_dir": cache_dir, "variant": variant,
               "trust_pickle": trust_pickle}  # fmt: skip
    # a model that cannot segment fails before anything is written
    opened = None
    if cluster is None:
        opened = model if isinstance(model, Model) else open_model(model, need="segment", **options)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MsamError(f"cannot create {output} ({exc.strerror})") from None
    if opened is None:
        rows = cluster.segment(model, cases, output, propagation=propagation, on_case=on_case, **options)
    else:
        predictor = opened.predictor(propagation)
        rows = []
        for path in cases:
            rows.append(segment_case(predictor, path, output))
            if on_case:
                on_case(path.name)
    run = SegmentRun(output, Path(timings_csv) if timings_csv else output / TIMINGS_FILE, rows)
    write_timings(run.timings_csv, rows)
    return run
