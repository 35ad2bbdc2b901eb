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
from ..metrics import agreement_dice, case_scores, challenge_case_scores
from ..runtime import OpenedModel, Predictor, Segmentation
from .system import cpu_info, peak_rss_mb

SCHEMA = "msam-export/verify@1"
# per case and summarised: "dsc"/"nsd" per label (the gate's), "challenge_*" as the challenge scores
SCORES = ("dsc", "nsd", "challenge_dsc", "challenge_nsd")


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


def runtime_description(opened: OpenedModel, predictor: Predictor) -> dict[str, Any]:
    backend = opened.backend
    actual = getattr(backend, "actual_precision", lambda: backend.precision)()
    return {
        "kind": opened.kind,
        "backend": backend.name,
        "model": opened.spec.name,
        "requested_precision": backend.precision,
        "actual_precision": actual,
        "source_sha256": opened.source.get("sha256"),
        "propagation": str(predictor.propagation),
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
    key = f"{path.resolve()}|{reference.propagation}"
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
        row |= {"reference": scores(ref.segs, gts, spacing), "candidate": scores(cand.segs, gts, spacing)}
    return row


def scores(segs: np.ndarray, gts: np.ndarray, spacing: tuple[float, ...] | None) -> dict[str, float]:
    """A case's DSC/NSD both ways: ``dsc``/``nsd`` per label with NSD gated on each label's own DSC
    (``metrics.case_scores``), and ``challenge_dsc``/``challenge_nsd`` as the challenge's
    ``compute_metrics.py`` computes them (``metrics.challenge_case_scores``)."""
    strict = case_scores(segs, gts, spacing)
    challenge = challenge_case_scores(segs, gts, spacing)
    return {
        "dsc": strict["dsc"],
        "nsd": strict["nsd"],
        "challenge_dsc": challenge["dsc"],
        "challenge_nsd": challenge["nsd"],
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over cases (agreement, DSC/NSD and their drops) and latency medians."""
    ok = [r for r in rows if "error" not in r]
    scored = [r for r in ok if "reference" in r]
    summary: dict[str, Any] = {
        "cases": len(ok),
        "boxes": sum(r["boxes"] for r in ok),
        "agreement_dsc": _nanmean(r["agreement_dsc"] for r in ok),
        "agreement_dsc_min": min((r["agreement_dsc"] for r in ok), default=math.nan),
    }
    for metric in SCORES:
        ref = _nanmean(r["reference"].get(metric, math.nan) for r in scored)
        cand = _nanmean(r["candidate"].get(metric, math.nan) for r in scored)
        summary |= {f"reference_{metric}": ref, f"candidate_{metric}": cand, f"{metric}_drop": ref - cand}
    return summary | {
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
    propagation: str | None = None,
) -> dict[str, Any]:
    """The whole verify report (see docs/FORMATS.md, "verify.json"). ``propagation`` overrides
    the model's own 3D rule for both sides."""
    if candidate.spec.name != reference.spec.name:
        raise MsamError(f"candidate is {candidate.spec.title} but the reference is {reference.spec.title}")
    ref_predictor = Predictor(reference.backend, reference.spec, propagation)
    cand_predictor = Predictor(candidate.backend, candidate.spec, propagation)
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
        "candidate": runtime_description(candidate, cand_predictor),
        "reference": runtime_description(reference, ref_predictor),
        "propagation": str(cand_predictor.propagation),
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
