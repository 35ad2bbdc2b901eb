"""What a case's overlay shows (one 2D slice of image, both label maps and the ground truth) and
how it is drawn.

The colour rule, exact so that a test (or anyone) can recover the disagreement from the PNG:

* ``REF_ONLY`` (255, 0, 0), pure red: reference > 0 and candidate == 0.
* ``CAND_ONLY`` (0, 0, 255), pure blue: candidate > 0 and reference == 0.
* ``LABEL_SWAP`` (255, 0, 255), magenta: both > 0 but with different labels.

These three are drawn last and fully opaque, and nothing else produces them: the image is
shown with every channel scaled by 7/8 (so no channel reaches 255), pixels where both agree
(same label > 0) are blended 35% towards ``AGREE_TINT`` (R and B stay <= 145), and the
ground-truth contour is ``GT_CONTOUR`` (255, 255, 0), yellow.

The downscale rule: a slice whose longest side is over ``MAX_SIDE`` (512) is shown at every
``f``-th row and column, ``f = ceil(longest / 512)``: ``array[::f, ::f]`` for the image and the
masks alike (nearest neighbour at the same indices), so the disagreement pixels of the PNG
equal ``(ref[::f, ::f] > 0) ^ (cand[::f, ::f] > 0)`` exactly.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

REF_ONLY = (255, 0, 0)
CAND_ONLY = (0, 0, 255)
LABEL_SWAP = (255, 0, 255)
AGREE_TINT = (0, 200, 0)
GT_CONTOUR = (255, 255, 0)
MAX_SIDE = 512
_AGREE_ALPHA = (7, 20)  # 35% of the tint, 65% of the image, in integer arithmetic


@dataclass
class CaseSlices:
    """What the page draws for one case, already downscaled (see the module docstring).

    image: (h, w, 3) uint8; reference, candidate: (h, w) label maps; gt: (h, w) or None.
    scale: the downscale factor ``f`` taken; z: the 3D slice shown (None for 2D).
    """

    name: str
    image: np.ndarray
    reference: np.ndarray
    candidate: np.ndarray
    gt: np.ndarray | None
    scale: int
    z: int | None


def downscale_factor(shape: tuple[int, ...]) -> int:
    """``f`` for an (H, W, ...) slice: 1 up to ``MAX_SIDE``, else ceil(longest side / ``MAX_SIDE``)."""
    return max(1, math.ceil(max(shape[:2]) / MAX_SIDE))


def _largest_union(reference: np.ndarray, candidate: np.ndarray) -> int:
    """The slice of two (D, H, W) label maps where either has the most pixels."""
    return int(np.argmax(((reference > 0) | (candidate > 0)).sum(axis=(1, 2))))


def pick_slice(row: dict[str, Any], reference: np.ndarray, candidate: np.ndarray) -> int:
    """The z to show of (D, H, W) label maps: the row's ``worst_slice`` when the agreement there is
    below 1, else the slice with the most disagreeing pixels; when the two agree everywhere, the
    slice with the largest union of both masks (the most to look at)."""
    worst = row.get("worst_slice")
    per_slice = row.get("agreement_per_slice") or []
    if isinstance(worst, int) and 0 <= worst < len(reference):
        value = per_slice[worst] if worst < len(per_slice) else None
        if value is None or not math.isfinite(value) or value < 1.0:
            return worst
    xor = ((reference > 0) ^ (candidate > 0)).sum(axis=(1, 2))
    return int(np.argmax(xor)) if xor.any() else _largest_union(reference, candidate)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 -> (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def case_slices(result: Any) -> CaseSlices:
    """The slices the page needs of a ``verify.report.CaseResult`` (copies; whole volumes dropped)."""
    ref, cand, gts = result.reference.segs, result.candidate.segs, result.gts
    image, z = result.case.image, None
    if result.case.is_3d:
        z = pick_slice(result.row, ref, cand)
        image, ref, cand = image[z], ref[z], cand[z]
        gts = gts[z] if gts is not None else None
    f = downscale_factor(ref.shape)
    return CaseSlices(
        name=str(result.row.get("case", result.case.name)),
        image=_as_rgb(image[::f, ::f]),
        reference=np.array(ref[::f, ::f]),
        candidate=np.array(cand[::f, ::f]),
        gt=np.array(gts[::f, ::f]) if gts is not None else None,
        scale=f,
        z=z,
    )


def contour(labels: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels of a label > 0 with a 4-neighbour of another label (or the border)."""
    pad = np.pad(labels, 1, mode="constant", constant_values=0)
    core = pad[1:-1, 1:-1]
    edge = (core != pad[:-2, 1:-1]) | (core != pad[2:, 1:-1]) | (core != pad[1:-1, :-2]) | (core != pad[1:-1, 2:])
    return edge & (core > 0)


def disagreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, np.ndarray]:
    """(h, w) bool masks: "ref_only", "cand_only", "swap" (both > 0, labels differ), "agree"."""
    ref, cand = reference > 0, candidate > 0
    both = ref & cand
    return {
        "ref_only": ref & ~cand,
        "cand_only": cand & ~ref,
        "swap": both & (reference != candidate),
        "agree": both & (reference == candidate),
    }


def draw_overlay(slices: CaseSlices) -> np.ndarray:
    """(h, w, 3) uint8: the dimmed image, agreement tint, GT contour, then the exact disagreement colours."""
    rgb = slices.image.astype(np.uint16) * 7 // 8
    masks = disagreement(slices.reference, slices.candidate)
    weight, total = _AGREE_ALPHA
    tint = np.array(AGREE_TINT, dtype=np.uint16)
    rgb[masks["agree"]] = (rgb[masks["agree"]] * (total - weight) + tint * weight) // total
    if slices.gt is not None:
        rgb[contour(slices.gt)] = GT_CONTOUR
    for key, colour in (("ref_only", REF_ONLY), ("cand_only", CAND_ONLY), ("swap", LABEL_SWAP)):
        rgb[masks[key]] = colour
    return rgb.astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG of an (h, w, 3) uint8 array (lossless, deterministic)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
