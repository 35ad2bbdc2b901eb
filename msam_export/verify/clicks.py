"""Click refinement as the 2025 interactive challenge simulates it, for the reference and the candidate.

Each 2D box starts from its box prompt (round 0). Every further round adds one click per box at
the centre of the largest error region of its current mask against the ground truth of its label:
a foreground click where the mask misses (false negatives), a background click where it is wrong
(false positives), the larger connected region deciding; the centre is the region's pixel farthest
from its border. The box, every click so far and the previous round's low-res logits (as the mask
prompt) make the next prompt. A box whose mask matches its ground truth gets no further click. Each
model refines on its own masks, so the two sides may click differently, as two users would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import paint_labels
from ..data import Case, load_case, load_ground_truth
from ..errors import MsamError
from ..metrics import agreement_dice, case_scores

DEFAULT_ROUNDS = 5
MAX_ROUNDS = 20


def parse_prompts(text: str) -> int:
    """verify's ``--prompts``: "box" (0 click rounds), "clicks" (5) or "clicks:K" (1 <= K <= 20)."""
    if text == "box":
        return 0
    name, _, value = text.partition(":")
    if name == "clicks" and not value:
        return DEFAULT_ROUNDS
    if name == "clicks" and value.isdigit() and 1 <= int(value) <= MAX_ROUNDS:
        return int(value)
    raise MsamError(f"--prompts {text!r}: expected box, clicks or clicks:K with 1 <= K <= {MAX_ROUNDS}")


def next_click(mask: np.ndarray, truth: np.ndarray) -> tuple[float, float, float] | None:
    """(x, y, label) of the next click on a box's bool (H, W) ``mask`` against its ground truth,
    or None when they are equal. Label 1 (foreground) in a missed region, 0 in a wrong one."""
    from scipy import ndimage

    ys, xs = np.nonzero(mask | truth)
    if ys.size == 0:
        return None
    # both error regions lie inside the bounding box of mask | truth: work on that crop
    y0, x0 = ys.min(), xs.min()
    crop = (slice(y0, ys.max() + 1), slice(x0, xs.max() + 1))
    mask, truth = mask[crop], truth[crop]
    best: tuple[int, np.ndarray, float] | None = None
    for region, label in ((truth & ~mask, 1.0), (mask & ~truth, 0.0)):
        components, count = ndimage.label(region)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())[1:]
        k = int(np.argmax(sizes))
        if best is None or sizes[k] > best[0]:
            best = (int(sizes[k]), components == k + 1, label)
    if best is None:
        return None
    distance = ndimage.distance_transform_edt(np.pad(best[1], 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x + x0), float(y + y0), best[2]


@dataclass
class Refinement:
    """One model's rounds on one case: ``masks[r]`` (N, H, W) bool after round r (0: the box),
    ``clicks[i]`` box i's clicks as (x, y, label)."""

    masks: list[np.ndarray] = field(default_factory=list)
    clicks: list[list[tuple[float, float, float]]] = field(default_factory=list)


def refine(predictor: Any, case: Case, truth: np.ndarray, rounds: int) -> Refinement:
    """Box, then ``rounds`` click rounds on a 2D case with its ground-truth label map ``truth``."""
    embedding = predictor.encode_2d(case.image)
    first = predictor.segment_2d(case.image, case.boxes, embedding=embedding)
    masks, logits = np.stack(first.box_masks), first.logits
    result = Refinement([masks.copy()], [[] for _ in case.boxes])
    done = np.zeros(len(case.boxes), dtype=bool)
    for _ in range(rounds):
        for i in np.flatnonzero(~done):
            click = next_click(masks[i], truth == i + 1)
            if click is None:
                done[i] = True
            else:
                result.clicks[i].append(click)
        active = np.flatnonzero(~done)
        for count in sorted({len(result.clicks[i]) for i in active}):
            rows = [i for i in active if len(result.clicks[i]) == count]
            points = np.array([[c[:2] for c in result.clicks[i]] for i in rows])
            labels = np.array([[c[2] for c in result.clicks[i]] for i in rows])
            found = predictor.segment_2d(
                case.image, case.boxes[rows], points=points, labels=labels, masks=logits[rows], embedding=embedding
            )
            masks[rows], logits[rows] = np.stack(found.box_masks), found.logits
        result.masks.append(masks.copy())
    return result


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def case_rounds(reference: Any, candidate: Any, path: Path, gts_dir: Path, rounds: int) -> dict[str, Any]:
    """One 2D case's per-round table: agreement and DSC/NSD of both sides against ground truth."""
    case = load_case(path)
    truth, _ = load_ground_truth(gts_dir / path.name, case)
    ref, cand = refine(reference, case, truth, rounds), refine(candidate, case, truth, rounds)
    table = []
    for r, (a, b) in enumerate(zip(ref.masks, cand.masks, strict=True)):
        ref_scores = case_scores(paint_labels(a, truth.shape), truth, None)
        cand_scores = case_scores(paint_labels(b, truth.shape), truth, None)
        table.append(
            {
                "round": r,
                "agreement_dsc": _mean([agreement_dice(x, y) for x, y in zip(a, b, strict=True)]),
                "reference_dsc": ref_scores["dsc"],
                "candidate_dsc": cand_scores["dsc"],
                "reference_nsd": ref_scores["nsd"],
                "candidate_nsd": cand_scores["nsd"],
                "reference_clicks": sum(min(len(c), r) for c in ref.clicks),
                "candidate_clicks": sum(min(len(c), r) for c in cand.clicks),
            }
        )
    return {"case": path.name, "modality": case.modality, "boxes": len(case.boxes), "rounds": table}


ROUND_KEYS = ("agreement_dsc", "reference_dsc", "candidate_dsc", "reference_nsd", "candidate_nsd")


def click_report(
    reference: Any, candidate: Any, paths: list[Path], gts_dir: Path | None, rounds: int, on_case: Any = None
) -> dict[str, Any]:
    """verify.json's ``clicks`` section: per case and per round (mean over cases) for the 2D cases
    with ground truth; the others are listed as skipped, with why."""
    cases, skipped = [], []
    for path in paths:
        if path.name.startswith("3D"):
            skipped.append({"case": path.name, "why": "3D: clicks are simulated on 2D cases"})
        elif gts_dir is None or not (gts_dir / path.name).is_file():
            skipped.append({"case": path.name, "why": "no ground truth to click against"})
        else:
            cases.append(case_rounds(reference, candidate, path, gts_dir, rounds))
        if on_case:
            on_case(path.name)
    per_round = [
        {"round": r} | {k: _mean([c["rounds"][r][k] for c in cases]) for k in ROUND_KEYS} for r in range(rounds + 1)
    ]
    return {
        "rounds": rounds,
        "rule": "one click per box per round at the centre of its largest error region; previous logits as mask",
        "per_round": per_round if cases else [],
        "cases": cases,
        "skipped": skipped,
    }
