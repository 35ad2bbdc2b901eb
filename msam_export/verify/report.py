"""``msam-export verify``: a candidate artifact against the PyTorch FP32 reference."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import load_case, load_ground_truth
from ..errors import MsamError
from ..files import sha256_of
from ..metrics import agreement_dice, case_scores
from ..runtime import OpenedModel, Predictor, Segmentation
from .system import cpu_info, peak_rss_mb

SCHEMA = "msam-export/verify@1"


@dataclass(frozen=True)
class Thresholds:
    """Limits that make verify fail; None means "report only"."""

    min_agreement: float | None = None
    max_dsc_drop: float | None = None
    max_nsd_drop: float | None = None

    def failures(self, overall: dict[str, Any]) -> list[str]:
        """Why ``overall`` fails these limits; a missing or NaN metric always fails."""
        checks = [
            ("mean agreement DSC", self.min_agreement, overall.get("agreement_dsc"), 1),
            ("DSC drop", self.max_dsc_drop, overall.get("dsc_drop"), -1),
            ("NSD drop", self.max_nsd_drop, overall.get("nsd_drop"), -1),
        ]
        out = []
        for name, limit, value, sign in checks:
            if limit is None:
                continue
            if value is None or not math.isfinite(value):
                out.append(f"{name} is missing or NaN (limit {limit})")
            elif sign * (value - limit) < 0:
                out.append(f"{name} {value:.4f} {'<' if sign > 0 else '>'} {limit}")
        return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def _nanmean(values: Iterable[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def box_agreement(reference: Segmentation, candidate: Segmentation) -> list[float]:
    """Agreement DSC between the two models' masks of each box."""
    return [agreement_dice(a, b) for a, b in zip(reference.box_masks, candidate.box_masks, strict=True)]


def runtime_description(opened: OpenedModel) -> dict[str, Any]:
    backend = opened.backend
    actual = getattr(backend, "actual_precision", lambda: backend.precision)()
    return {
        "kind": opened.kind,
        "backend": backend.name,
        "model": opened.spec.name,
        "requested_precision": backend.precision,
        "actual_precision": actual,
        "source_sha256": opened.source.get("sha256"),
    }


def _gt_path(case_path: Path, gts_dir: Path | None) -> Path | None:
    if gts_dir is None:
        return None
    path = gts_dir / case_path.name
    return path if path.is_file() else None


def data_fingerprint(cases: list[Path], gts_dir: Path | None) -> str:
    """sha256 over the sorted (case file name, sha256) pairs, then the ground-truth files' pairs.

    Two verify runs have the same fingerprint only if they read byte-identical inputs and
    ground truth under the same names: what the gate needs to compare their metrics."""
    digest = hashlib.sha256()
    ordered = sorted(cases, key=lambda p: p.name)
    for path in ordered:
        digest.update(f"imgs/{path.name}\t{sha256_of(path)}\n".encode())
    for path in ordered:
        gt = _gt_path(path, gts_dir)
        if gt is not None:
            digest.update(f"gts/{gt.name}\t{sha256_of(gt)}\n".encode())
    return digest.hexdigest()


def verify_case(
    path: Path,
    reference: Predictor,
    candidate: Predictor,
    gts_dir: Path | None,
    repeats: int,
    reference_cache: dict[str, Segmentation] | None = None,
) -> dict[str, Any]:
    """One case: agreement per box, DSC/NSD vs ground truth for both, latency.

    ``reference_cache`` (case path -> reference segmentation) lets several candidates
    share one run of the reference."""
    case = load_case(path)
    key = str(path.resolve())
    if reference_cache is not None and key in reference_cache:
        ref = reference_cache[key]
    else:
        ref = reference.segment(case)
        if reference_cache is not None:
            reference_cache[key] = ref
    runs = [candidate.segment(case) for _ in range(max(1, repeats))]
    cand = runs[-1]
    agreement = box_agreement(ref, cand)
    walls = [r.wall_ms for r in runs]
    encoder_calls = [ms for r in runs for ms in r.timings.encoder_call_ms]
    row: dict[str, Any] = {
        "case": path.name,
        "modality": case.modality,
        "dims": "3D" if case.is_3d else "2D",
        "boxes": len(case.boxes),
        "agreement_dsc": _nanmean(agreement),
        "agreement_per_box": [round(a, 6) for a in agreement],
        "latency": {
            "encoder_ms_median": percentile(encoder_calls, 50),
            "encoder_ms_p90": percentile(encoder_calls, 90),
            "encoder_calls": cand.timings.encoder_calls,
            "decoder_ms_per_box": cand.timings.decoder_ms / max(1, cand.timings.decoded_boxes),
            "wall_ms_median": percentile(walls, 50),
            "wall_ms_p90": percentile(walls, 90),
            "reference_wall_ms": ref.wall_ms,
            "stages_ms": cand.timings.to_dict(),
        },
    }
    gt_path = _gt_path(path, gts_dir)
    if gt_path is not None:
        gts, spacing = load_ground_truth(gt_path, case)
        spacing = spacing if case.is_3d else None
        ref_scores = case_scores(ref.segs, gts, spacing)
        cand_scores = case_scores(cand.segs, gts, spacing)
        row |= {
            "reference": {"dsc": ref_scores["dsc"], "nsd": ref_scores["nsd"]},
            "candidate": {"dsc": cand_scores["dsc"], "nsd": cand_scores["nsd"]},
        }
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over cases (agreement, DSC/NSD and their drops) and latency medians."""
    ok = [r for r in rows if "error" not in r]
    scored = [r for r in ok if "reference" in r]
    ref_dsc = _nanmean(r["reference"]["dsc"] for r in scored)
    cand_dsc = _nanmean(r["candidate"]["dsc"] for r in scored)
    ref_nsd = _nanmean(r["reference"]["nsd"] for r in scored)
    cand_nsd = _nanmean(r["candidate"]["nsd"] for r in scored)
    return {
        "cases": len(ok),
        "boxes": sum(r["boxes"] for r in ok),
        "agreement_dsc": _nanmean(r["agreement_dsc"] for r in ok),
        "agreement_dsc_min": min((r["agreement_dsc"] for r in ok), default=math.nan),
        "reference_dsc": ref_dsc,
        "candidate_dsc": cand_dsc,
        "dsc_drop": ref_dsc - cand_dsc,
        "reference_nsd": ref_nsd,
        "candidate_nsd": cand_nsd,
        "nsd_drop": ref_nsd - cand_nsd,
        "encoder_ms_median": _median(r["latency"]["encoder_ms_median"] for r in ok),
        "decoder_ms_per_box_median": _median(r["latency"]["decoder_ms_per_box"] for r in ok),
        "wall_ms_median": _median(r["latency"]["wall_ms_median"] for r in ok),
        "reference_wall_ms_median": _median(r["latency"]["reference_wall_ms"] for r in ok),
    }


def _median(values: Iterable[float]) -> float:
    values = [v for v in values if math.isfinite(v)]
    return statistics.median(values) if values else math.nan


def by_modality(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if "error" not in row:
            groups[row["modality"]].append(row)
    return {modality: summarize(group) for modality, group in sorted(groups.items())}


def run_verify(
    candidate: OpenedModel,
    reference: OpenedModel,
    cases: list[Path],
    gts_dir: Path | None,
    repeats: int = 1,
    thresholds: Thresholds = Thresholds(),
    on_case: Callable[[str], None] | None = None,
    reference_cache: dict[str, Segmentation] | None = None,
) -> dict[str, Any]:
    """The whole verify report (see README, "verify.json")."""
    if candidate.spec.name != reference.spec.name:
        raise MsamError(f"candidate is {candidate.spec.title} but the reference is {reference.spec.title}")
    ref_predictor = Predictor(reference.backend, reference.spec)
    cand_predictor = Predictor(candidate.backend, candidate.spec)
    rows = []
    for path in cases:
        try:
            rows.append(verify_case(path, ref_predictor, cand_predictor, gts_dir, repeats, reference_cache))
        except (MsamError, ValueError) as exc:
            rows.append({"case": path.name, "error": str(exc)})
        if on_case:
            on_case(path.name)
    overall = summarize(rows)
    failures = thresholds.failures(overall)
    errors = [r for r in rows if "error" in r]
    if errors:
        failures.append(f"{len(errors)} case(s) failed: " + "; ".join(r["error"] for r in errors[:3]))
    return {
        "schema": SCHEMA,
        "candidate": runtime_description(candidate),
        "reference": runtime_description(reference),
        "data": {
            "cases": [p.name for p in cases],
            "gts": str(gts_dir) if gts_dir else None,
            "fingerprint": data_fingerprint(cases, gts_dir),
        },
        "system": cpu_info() | {"peak_rss_mb": round(peak_rss_mb(), 1)},
        "repeats": repeats,
        "thresholds": thresholds.__dict__,
        "overall": overall,
        "by_modality": by_modality(rows),
        "cases": rows,
        "verdict": {"passed": not failures, "failures": failures},
    }
