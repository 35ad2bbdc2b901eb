"""``msam-export segment``: challenge-format inputs -> ``segs`` npz files + a timing CSV."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data import list_cases, load_case, save_segmentation
from ..errors import MsamError
from .predictor import Predictor

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
    "status",
)


def data_dirs(data: Path, gts: Path | None = None) -> tuple[Path, Path | None]:
    """(inputs, ground truth): DATA/imgs and DATA/gts when DATA has them, else DATA itself."""
    if (data / "imgs").is_dir():
        return data / "imgs", gts or ((data / "gts") if (data / "gts").is_dir() else None)
    return data, gts


def segment_dir(
    predictor: Predictor, input_dir: Path, output_dir: Path, on_case: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Segments every case; a bad case is reported in its row and the run goes on."""
    cases = list_cases(input_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MsamError(f"cannot create {output_dir} ({exc.strerror})") from None
    rows = []
    for path in cases:
        rows.append(_segment_one(predictor, path, output_dir))
        if on_case:
            on_case(path.name)
    return rows


def _segment_one(predictor: Predictor, path: Path, output_dir: Path) -> dict[str, Any]:
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
        "status": "ok",
    }


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Writes the timing CSV atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)
