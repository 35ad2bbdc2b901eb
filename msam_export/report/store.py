"""The files of a report beside its verify.json: ``<stem>.html`` and ``<stem>.slices.npz``.

The npz (compressed, no pickles) holds what the page drew, so that ``report`` can draw it again:
``names`` (one str per case) and, for case ``i``, ``{i}.image`` (h, w, 3) uint8, ``{i}.reference``
and ``{i}.candidate`` (h, w) label maps, ``{i}.gt`` when the case has ground truth, and
``{i}.meta`` int64 [scale, z] (z = -1 for a 2D case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MsamError
from ..files import PathLike, atomic_file, read_json
from .overlay import CaseSlices

SCHEMA_PREFIX = "msam-export/verify@"  # any version of the verify report (verify sits above report)


def html_path(json_path: PathLike) -> Path:
    """``out/verify.json`` -> ``out/verify.html`` (same stem)."""
    return Path(json_path).with_suffix(".html")


def slices_path(json_path: PathLike) -> Path:
    """``out/verify.json`` -> ``out/verify.slices.npz`` (same stem)."""
    return Path(json_path).with_suffix(".slices.npz")


def save_slices(path: Path, cases: list[CaseSlices]) -> None:
    """Writes the cases' slices as one compressed npz, atomically."""
    arrays: dict[str, np.ndarray] = {"names": np.array([c.name for c in cases], dtype=str)}
    for i, c in enumerate(cases):
        arrays |= {f"{i}.image": c.image, f"{i}.reference": c.reference, f"{i}.candidate": c.candidate}
        arrays[f"{i}.meta"] = np.array([c.scale, -1 if c.z is None else c.z], dtype=np.int64)
        if c.gt is not None:
            arrays[f"{i}.gt"] = c.gt
    with atomic_file(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def _case(archive: Any, i: int, name: str) -> CaseSlices:
    scale, z = (int(v) for v in archive[f"{i}.meta"])
    return CaseSlices(
        name=name,
        image=archive[f"{i}.image"],
        reference=archive[f"{i}.reference"],
        candidate=archive[f"{i}.candidate"],
        gt=archive[f"{i}.gt"] if f"{i}.gt" in archive.files else None,
        scale=scale,
        z=None if z < 0 else z,
    )


def load_slices(path: Path) -> dict[str, CaseSlices]:
    """Case name -> its slices, from a ``.slices.npz``; MsamError when absent or unreadable."""
    if not path.is_file():
        raise MsamError(f"{path}: no such slices file (written by verify beside its verify.json)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = [str(n) for n in archive["names"]]
            return {name: _case(archive, i, name) for i, name in enumerate(names)}
    except Exception as exc:  # zipfile/numpy raise many types for bad bytes or missing keys
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MsamError(f"{path}: unreadable slices file ({reason})") from None


def load_run(path: PathLike) -> tuple[dict[str, Any], dict[str, CaseSlices]]:
    """A saved verify run: its verify.json (a directory: its verify.json) and the slices beside it."""
    path = Path(path)
    if path.is_dir():
        path = path / "verify.json"
    report = read_json(path, "verify.json")
    if not isinstance(report, dict) or not str(report.get("schema", "")).startswith(SCHEMA_PREFIX):
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise MsamError(f"{path}: not a verify report (schema {found!r}, expected {SCHEMA_PREFIX}N)")
    if not isinstance(report.get("cases"), list):
        raise MsamError(f"{path}: verify report without a 'cases' list")
    return report, load_slices(slices_path(path))
