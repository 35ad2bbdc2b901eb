"""verify.json on disk and as a table on screen."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table

from ..files import atomic_file


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def verify_table(report: dict[str, Any]) -> Table:
    cand = report["candidate"]
    system = report["system"]
    title = (
        f"{cand['kind']} ({cand['actual_precision']}) vs PyTorch FP32 on {system['model']}"
        f" [{', '.join(k for k, v in system['isa'].items() if v) or 'no AVX2'}]"
    )
    table = Table(title=title)
    columns = ("modality", "cases", "boxes", "agreement", "DSC ref", "DSC cand", "NSD ref", "NSD cand")
    for col in columns + ("enc ms", "dec ms/box", "case ms"):
        table.add_column(col, justify="right" if col != "modality" else "left")
    rows = list(report["by_modality"].items()) + [("overall", report["overall"])]
    for name, s in rows:
        table.add_row(
            name,
            str(s["cases"]),
            str(s["boxes"]),
            _fmt(s["agreement_dsc"]),
            _fmt(s["reference_dsc"]),
            _fmt(s["candidate_dsc"]),
            _fmt(s["reference_nsd"]),
            _fmt(s["candidate_nsd"]),
            _fmt(s["encoder_ms_median"], 0),
            _fmt(s["decoder_ms_per_box_median"], 1),
            _fmt(s["wall_ms_median"], 0),
        )
    return table


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Writes the report as JSON (NaN as null) atomically."""
    with atomic_file(Path(path)) as f:
        json.dump(_json_safe(report), f, indent=2)
        f.write("\n")
