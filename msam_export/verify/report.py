"""The verify report: a candidate artifact against the PyTorch FP32 reference on challenge cases.

Per case: mask agreement DSC between the two models per box (3D: propagated as ``segment``
runs it, and teacher-forced, each slice decoded with the reference's own prompt, so that
what the candidate gets wrong on a slice is told apart from what propagation compounds),
DSC/NSD of both against ground truth (per label, and as the challenge scores them) and
latency. Then means per modality and overall, and a verdict against the limits.
"""

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

from ..data import Case, load_case, load_ground_truth
from ..errors import MsamError
from ..files import sha256_of
from ..limits import Limits
from ..metrics import agreement_dice, case_scores, challenge_case_scores
from ..runtime import Model, Predictor, Segmentation
from ..system import cpu_info, host_and_cpu, peak_rss_mb, target_of

SCHEMA = "msam-export/verify@1"
# per case and summarised: "dsc"/"nsd" per label (what the limits and the gate use), and
# "challenge_dsc"/"challenge_nsd" as the challenge's compute_metrics.py scores a case
SCORES = ("dsc", "nsd", "challenge_dsc", "challenge_nsd")
# 2D objects by the pixel area of the reference mask (original resolution). One boundary pixel
# moves the agreement DSC of a 4-pixel object by 10-40 points and that of a 10,000-pixel object
# by 0.01, so the bands tell a fragile metric on small objects from a model that is off.
SIZE_BANDS: tuple[tuple[int, int | None], ...] = ((0, 100), (100, 1_000), (1_000, 10_000), (10_000, None))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def _nanmean(values: Iterable[float | None]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _median(values: Iterable[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def box_agreement(reference: Segmentation, candidate: Segmentation) -> list[float]:
    """Agreement DSC between the two models' masks of each box."""
    return [agreement_dice(a, b) for a, b in zip(reference.box_masks, candidate.box_masks, strict=True)]


def slice_agreement(reference: Segmentation, candidate: Segmentation) -> list[float]:
    """3D: agreement DSC per slice of the label maps (mean over the boxes' labels present on it)."""
    out = []
    for ref_slice, cand_slice in zip(reference.segs, candidate.segs, strict=True):
        labels = np.union1d(np.unique(ref_slice), np.unique(cand_slice))
        labels = labels[labels > 0]
        out.append(_nanmean(agreement_dice(ref_slice == k, cand_slice == k) for k in labels) if labels.size else 1.0)
    return out


def describe_model(model: Model, predictor: Predictor) -> dict[str, Any]:
    """What ran: kind, backend, model, weights and inference precision, target arithmetic, 3D rule."""
    backend = model.backend
    actual = getattr(backend, "actual_precision", lambda: backend.precision)()
    quantization = (model.record or {}).get("quantization") or {}
    return {
        "kind": model.kind,
        "backend": backend.name,
        "model": model.spec.name,
        "weights": model.precision,
        "requested_precision": backend.precision,
        "actual_precision": actual,
        "target": quantization.get("target"),
        "source_sha256": model.source.get("sha256"),
        "propagation": str(predictor.propagation),
    }


def arithmetic(model: Model) -> dict[str, Any]:
    """Which INT8 arithmetic this machine measured the model with: its own target's (``exact``), or,
    on a CPU that cannot run it (8-bit weights without VNNI), the f32 emulation of it (``emulated``).
    Float artifacts run the same arithmetic everywhere."""
    here = target_of(cpu_info()["isa"])
    target = ((model.record or {}).get("quantization") or {}).get("target")
    if model.precision != "int8":
        return {"int8": False, "cpu": here, "target": None, "exact": True, "emulated": False}
    emulated = bool(getattr(model.backend, "emulated", False))
    return {"int8": True, "cpu": here, "target": target, "exact": not emulated, "emulated": emulated}


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


@dataclass
class CaseResult:
    """One verified case: its report row, the case, both segmentations and the ground truth."""

    row: dict[str, Any]
    case: Case
    reference: Segmentation
    candidate: Segmentation
    gts: np.ndarray | None = None


def verify_case(
    path: Path,
    reference: Predictor,
    candidate: Predictor,
    gts_dir: Path | None,
    repeats: int = 1,
    reference_cache: dict[str, Segmentation] | None = None,
) -> CaseResult:
    """One case: its report row, both segmentations and the ground truth.

    ``reference_cache`` (case and rule -> reference segmentation) lets several candidates
    share one run of the reference."""
    case = load_case(path)
    key = f"{path.resolve()}|{reference.propagation}"
    ref = reference_cache.get(key) if reference_cache is not None else None
    if ref is None:
        ref = reference.segment(case)
        if reference_cache is not None:
            reference_cache[key] = ref
    embeddings: dict = {}  # the last run's slice embeddings, reused by the teacher-forced run
    runs = []
    for r in range(max(1, repeats)):
        last = r == max(1, repeats) - 1
        if case.is_3d:
            runs.append(candidate.segment_3d(case.image, case.boxes, embeddings=embeddings if last else None))
        else:
            runs.append(candidate.segment(case))
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
    }
    if case.is_3d:
        forced = candidate.segment_3d(case.image, case.boxes, forced_prompts=ref.prompts, embeddings=embeddings)
        per_slice = slice_agreement(ref, cand)
        row |= {
            "teacher_forced_agreement_dsc": _nanmean(box_agreement(ref, forced)),
            "agreement_per_slice": [round(a, 6) for a in per_slice],
            "worst_slice": int(np.nanargmin(per_slice)) if per_slice else None,
        }
    else:
        row["teacher_forced_agreement_dsc"] = row["agreement_dsc"]
        row["reference_pixels_per_box"] = [int(np.count_nonzero(m)) for m in ref.box_masks]
    row["latency"] = {
        "first_encoder_call_ms": runs[0].timings.encoder_call_ms[0] if runs[0].timings.encoder_call_ms else None,
        "encoder_ms_median": percentile(encoder_calls, 50),
        "encoder_ms_p90": percentile(encoder_calls, 90),
        "encoder_calls": cand.timings.encoder_calls,
        "decoder_ms_per_box": cand.timings.decoder_ms / max(1, cand.timings.decoded_boxes),
        "wall_ms_median": percentile(walls, 50),
        "wall_ms_p90": percentile(walls, 90),
        "reference_wall_ms": ref.wall_ms,
        "stages_ms": cand.timings.to_dict(),
        "reference_stages_ms": ref.timings.to_dict(),
        **host_and_cpu(),
    }
    gt_path = _gt_path(path, gts_dir)
    gts = None
    if gt_path is not None:
        gts, spacing = load_ground_truth(gt_path, case)
        spacing = spacing if case.is_3d else None
        row |= {"reference": scores(ref.segs, gts, spacing), "candidate": scores(cand.segs, gts, spacing)}
    return CaseResult(row, case, ref, cand, gts)


def band_name(low: int, high: int | None) -> str:
    return f">= {low:,} px" if high is None else f"{low:,}-{high - 1:,} px"


def size_bands(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The 2D boxes of ``rows`` by reference mask area (``SIZE_BANDS``): per band with boxes, its
    name, the number of boxes and their mean agreement DSC (an object both models miss counts 1)."""
    pairs = [
        pair
        for r in rows
        if "reference_pixels_per_box" in r
        for pair in zip(r["reference_pixels_per_box"], r["agreement_per_box"], strict=True)
    ]
    out = []
    for low, high in SIZE_BANDS:
        inside = [a for p, a in pairs if p >= low and (high is None or p < high)]
        if inside:
            out.append({"band": band_name(low, high), "boxes": len(inside), "agreement_dsc": _nanmean(inside)})
    return out


def band_cells(bands: list[dict[str, Any]], names: list[str]) -> list[str]:
    """``size_bands`` output as one text per band name: "agreement (boxes)", or "-" for an empty band."""
    found = {b["band"]: b for b in bands}
    return [f"{found[n]['agreement_dsc']:.4f} ({found[n]['boxes']})" if n in found else "-" for n in names]


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over cases (agreement, DSC/NSD and their drops) and latency medians."""
    ok = [r for r in rows if "error" not in r]
    scored = [r for r in ok if "reference" in r]
    summary: dict[str, Any] = {
        "cases": len(ok),
        "boxes": sum(r["boxes"] for r in ok),
        "agreement_dsc": _nanmean(r["agreement_dsc"] for r in ok),
        "agreement_dsc_min": min((r["agreement_dsc"] for r in ok), default=math.nan),
        "teacher_forced_agreement_dsc": _nanmean(r.get("teacher_forced_agreement_dsc") for r in ok),
        "agreement_2d_by_object_size": size_bands(ok),
    }
    for metric in SCORES:
        ref = _nanmean(r["reference"].get(metric) for r in scored)
        cand = _nanmean(r["candidate"].get(metric) for r in scored)
        summary |= {f"reference_{metric}": ref, f"candidate_{metric}": cand, f"{metric}_drop": ref - cand}
    return summary | {
        "encoder_ms_median": _median(r["latency"]["encoder_ms_median"] for r in ok),
        "decoder_ms_per_box_median": _median(r["latency"]["decoder_ms_per_box"] for r in ok),
        "wall_ms_median": _median(r["latency"]["wall_ms_median"] for r in ok),
        "reference_wall_ms_median": _median(r["latency"]["reference_wall_ms"] for r in ok),
    }


def group_summaries(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """``summarize`` per value of ``key`` ("modality", "dims") over the rows without errors."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if "error" not in row:
            groups[row[key]].append(row)
    return {name: summarize(group) for name, group in sorted(groups.items())}


def latency_hosts(rows: list[dict[str, Any]]) -> list[str]:
    """The distinct "host (cpu)" the cases' latencies were measured on."""
    found = {f"{r['latency'].get('host')} ({r['latency'].get('cpu')})" for r in rows if "latency" in r}
    return sorted(found)


def build_report(
    candidate: Model,
    reference: Model,
    cases: list[Path],
    gts_dir: Path | None,
    rows: list[dict[str, Any]],
    limits: Limits,
    repeats: int,
    propagation: str,
    cold: dict[str, Any],
) -> dict[str, Any]:
    """The verify.json document from the case rows."""
    overall = summarize(rows)
    failures = limits.failures(overall)
    errors = [r for r in rows if "error" in r]
    if errors:
        failures.append(f"{len(errors)} case(s) failed: " + "; ".join(r["error"] for r in errors[:3]))
    ref_predictor, cand_predictor = reference.predictor(propagation), candidate.predictor(propagation)
    hosts = latency_hosts(rows)
    return {
        "schema": SCHEMA,
        "candidate": describe_model(candidate, cand_predictor),
        "reference": describe_model(reference, ref_predictor),
        "propagation": str(cand_predictor.propagation),
        "arithmetic": arithmetic(candidate),
        "data": {
            "cases": [p.name for p in cases],
            "gts": str(gts_dir) if gts_dir else None,
            "fingerprint": data_fingerprint(cases, gts_dir),
        },
        "system": cpu_info() | {"peak_rss_mb": round(peak_rss_mb(), 1)},
        "latency_hosts": hosts,
        "latency_note": "measured on several machines; compare latency within one host only"
        if len(hosts) > 1
        else "measured on one machine",
        "cold_start": cold,
        "repeats": repeats,
        "thresholds": limits.to_dict(),
        "overall": overall,
        "by_dims": group_summaries(rows, "dims"),
        "by_modality": group_summaries(rows, "modality"),
        "cases": rows,
        "verdict": {"passed": not failures, "failures": failures},
    }


def run_verify(
    candidate: Model,
    reference: Model,
    cases: list[Path],
    gts_dir: Path | None,
    limits: Limits,
    *,
    repeats: int = 1,
    on_case: Callable[[str], None] | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
    reference_cache: dict[str, Segmentation] | None = None,
    propagation: str | None = None,
) -> dict[str, Any]:
    """Verifies every case in this process; returns the report (see docs/FORMATS.md).

    ``on_result`` sees each verified case (the HTML report keeps slices of it); ``propagation``
    overrides the model's 3D rule for both sides."""
    if candidate.spec.name != reference.spec.name:
        raise MsamError(f"candidate is {candidate.spec.title} but the reference is {reference.spec.title}")
    ref_predictor = reference.predictor(propagation)
    cand_predictor = candidate.predictor(propagation)
    rows = []
    for path in cases:
        try:
            result = verify_case(path, ref_predictor, cand_predictor, gts_dir, repeats, reference_cache)
        except (MsamError, ValueError) as exc:
            rows.append({"case": path.name, "error": str(exc)})
        else:
            rows.append(result.row)
            if on_result is not None:
                on_result(result)
        if on_case:
            on_case(path.name)
    timed = [r["latency"] for r in rows if "latency" in r]
    cold = {
        "open_ms": round(candidate.open_ms, 1),
        "first_encoder_call_ms": timed[0]["first_encoder_call_ms"] if timed else None,
        "warm_encoder_ms_median": _median(t["encoder_ms_median"] for t in timed),
        "compile_cache": getattr(candidate.backend, "cache_dir", None),
    }
    rule = str(cand_predictor.propagation)
    return build_report(candidate, reference, cases, gts_dir, rows, limits, repeats, rule, cold)
