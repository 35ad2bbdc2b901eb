"""verify's result as a table on screen."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from .report import band_cells


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def verify_table(report: dict[str, Any]) -> Table:
    """Per modality and overall: agreement (propagated, teacher-forced), DSC/NSD of both, latency."""
    cand = report["candidate"]
    system = report["system"]
    title = (
        f"{cand['kind']} {cand.get('weights', '')} ({cand['actual_precision']}) vs PyTorch FP32 on {system['model']}"
        f" [{', '.join(k for k, v in system['isa'].items() if v) or 'no AVX2'}]"
    )
    table = Table(title=title, caption="DSC/NSD per label; challenge scoring in verify.json (challenge_*)")
    columns = ("modality", "cases", "boxes", "agreement", "forced", "DSC ref", "DSC cand", "NSD ref", "NSD cand")
    for col in columns + ("enc ms", "dec ms/box", "case ms"):
        table.add_column(col, justify="right" if col != "modality" else "left")
    rows = list(report["by_modality"].items()) + [("overall", report["overall"])]
    for name, s in rows:
        table.add_row(
            name,
            str(s["cases"]),
            str(s["boxes"]),
            _fmt(s["agreement_dsc"]),
            _fmt(s.get("teacher_forced_agreement_dsc")),
            _fmt(s["reference_dsc"]),
            _fmt(s["candidate_dsc"]),
            _fmt(s["reference_nsd"]),
            _fmt(s["candidate_nsd"]),
            _fmt(s["encoder_ms_median"], 0),
            _fmt(s["decoder_ms_per_box_median"], 1),
            _fmt(s["wall_ms_median"], 0),
        )
    return table


def size_table(report: dict[str, Any]) -> Table | None:
    """2D agreement by object size (reference mask area), overall and for each modality, or None
    when there are no 2D boxes."""
    rows = [(name, s) for name, s in report["by_modality"].items() if s.get("agreement_2d_by_object_size")]
    if not rows:
        return None
    rows.append(("overall 2D", report["overall"]))
    bands = [b["band"] for b in report["overall"]["agreement_2d_by_object_size"]]
    table = Table(title="2D agreement by object size (reference mask area; boxes in brackets)")
    table.add_column("modality")
    for band in bands:
        table.add_column(band, justify="right")
    for name, s in rows:
        table.add_row(name, *band_cells(s["agreement_2d_by_object_size"], bands))
    return table


def clicks_table(report: dict[str, Any]) -> Table | None:
    """The click rounds (verify --prompts clicks:K): per round, agreement and DSC/NSD of both, or None."""
    clicks = report.get("clicks")
    if not clicks or not clicks["per_round"]:
        return None
    cases = len(clicks["cases"])
    table = Table(title=f"click refinement, {clicks['rounds']} rounds on {cases} 2D case(s) (round 0: the box)")
    for col in ("round", "agreement", "DSC ref", "DSC cand", "NSD ref", "NSD cand"):
        table.add_column(col, justify="right")
    for r in clicks["per_round"]:
        table.add_row(
            str(r["round"]),
            _fmt(r["agreement_dsc"]),
            _fmt(r["reference_dsc"]),
            _fmt(r["candidate_dsc"]),
            _fmt(r["reference_nsd"]),
            _fmt(r["candidate_nsd"]),
        )
    return table
