"""The challenge's segmentation metrics: Dice (DSC) and normalised surface Dice (NSD).

NSD follows DeepMind's surface-distance package (``compute_surface_distances`` +
``compute_surface_dice_at_tolerance``), which the CVPR24 "MedSAM on laptop" challenge
uses through its ``SurfaceDice.py``:

* every mask is cropped to the bounding box of the union of both masks;
* a 2x2 (2D) or 2x2x2 (3D) neighbourhood code is computed at every voxel corner of the
  crop (zero padded by one on each side, so the code grid is one larger per axis);
* corners whose code is neither 0 nor "all inside" are surface elements; each gets the
  contour length (2D) or surface area (3D) of the marching-squares / marching-cubes
  pieces inside its cell, from a lookup table that depends on the spacing;
* distances from each surface element to the other mask's surface elements come from
  ``scipy.ndimage.distance_transform_edt(sampling=spacing)`` on the code grid;
* NSD = (area of gt surface within tolerance of pred + area of pred surface within
  tolerance of gt) / (total gt area + total pred area).

The lookup tables are generated here (``surface_area_table``), not copied: for each code
the cut edges' midpoints are joined face by face (on a face with two diagonal corners of
one state, the corners of the minority state are cut off; with a 2/2 or 4/4 tie the
inside corners), the segments are chained into polygons, and each polygon is split into
the triangulation of largest total area. This reproduces DeepMind's 256-entry 3D table
(its normals are marching-cubes triangles) and its 16-entry 2D table for any spacing.

Conventions (see each function): masks are boolean arrays indexed like the image,
(H, W) or (D, H, W); ``spacing`` gives the physical size of one step along each array
axis in that order, e.g. a challenge 3D file's ``spacing`` as stored.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _ndimage():
    """scipy.ndimage, imported when a metric is computed (importing this module stays light)."""
    from scipy import ndimage

    return ndimage


NSD_DSC_THRESHOLD = 0.2
"""NSD is only computed where DSC exceeds this; below it NSD counts as 0."""

DEFAULT_TOLERANCE = 2.0
"""The challenge's NSD tolerance (mm in 3D, pixels in 2D)."""

Point = tuple[float, ...]


# --------------------------------------------------------------------------- tables


def _corner_weight(rank: int, ndim: int) -> int:
    """Bit of the corner with row-major rank ``rank`` (0 = the (0,..,0) corner = MSB)."""
    return 1 << (2**ndim - 1 - rank)


def _is_inside(code: int, corner: tuple[int, ...]) -> bool:
    rank = int("".join(map(str, corner)), 2)
    return bool(code & _corner_weight(rank, len(corner)))


def _faces(ndim: int) -> list[list[tuple[int, ...]]]:
    """The square faces of the unit cell, each as its 4 corners in cyclic order."""
    if ndim == 2:
        return [[(0, 0), (0, 1), (1, 1), (1, 0)]]
    faces = []
    for axis in range(3):
        others = [d for d in range(3) if d != axis]
        for value in (0, 1):
            cycle = []
            for p, q in ((0, 0), (0, 1), (1, 1), (1, 0)):
                corner = [0, 0, 0]
                corner[axis], corner[others[0]], corner[others[1]] = value, p, q
                cycle.append(tuple(corner))
            faces.append(cycle)
    return faces


def _midpoint(a: tuple[int, ...], b: tuple[int, ...]) -> Point:
    return tuple((x + y) / 2 for x, y in zip(a, b, strict=True))


def _face_segments(code: int, face: list[tuple[int, ...]]) -> list[tuple[Point, Point]]:
    """Iso-contour segments on one face, joining midpoints of its cut edges."""
    inside = [_is_inside(code, c) for c in face]
    cut = [i for i in range(4) if inside[i] != inside[(i + 1) % 4]]
    edge = [_midpoint(face[i], face[(i + 1) % 4]) for i in range(4)]
    if len(cut) == 2:
        return [(edge[cut[0]], edge[cut[1]])]
    if len(cut) == 4:  # saddle: cut off each corner of the separated state
        ndim = len(face[0])
        n_inside = bin(code).count("1")
        separate_inside = n_inside <= 2 ** (ndim - 1)
        return [(edge[i], edge[i - 1]) for i in range(4) if inside[i] == separate_inside]
    return []


def _chain(segments: list[tuple[Point, Point]]) -> list[list[Point]]:
    """Join segments into polylines; closed loops in 3D, single segments in 2D."""
    neighbours: dict[Point, list[Point]] = {}
    for a, b in segments:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    seen: set[Point] = set()
    chains = []
    for start in neighbours:
        if start in seen:
            continue
        chain, current = [start], start
        seen.add(start)
        while True:
            nxt = [p for p in neighbours[current] if p not in seen]
            if not nxt:
                break
            current = nxt[0]
            chain.append(current)
            seen.add(current)
        chains.append(chain)
    return chains


@functools.cache
def _triangulations(n: int) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """All triangulations of a convex n-gon with vertices 0..n-1."""

    def split(i: int, j: int) -> list[list[tuple[int, int, int]]]:
        if j - i < 2:
            return [[]]
        return [left + [(i, k, j)] + right for k in range(i + 1, j) for left in split(i, k) for right in split(k, j)]

    return tuple(tuple(t) for t in split(0, n - 1))


def _triangle_normal(a: Point, b: Point, c: Point) -> np.ndarray:
    """Area vector (normal with length = area) of triangle abc."""
    pa, pb, pc = (np.asarray(p, dtype=np.float64) for p in (a, b, c))
    return 0.5 * np.cross(pb - pa, pc - pa)


def _polygon_normals(polygon: list[Point]) -> list[np.ndarray]:
    """Triangle area vectors of the largest-area triangulation of a 3D polygon."""
    best: list[np.ndarray] = []
    best_area = -1.0
    for triangulation in _triangulations(len(polygon)):
        normals = [_triangle_normal(*(polygon[k] for k in tri)) for tri in triangulation]
        area = sum(float(np.linalg.norm(n)) for n in normals)
        if area > best_area + 1e-12:
            best, best_area = normals, area
    return best


def _code_normals(code: int, ndim: int) -> list[np.ndarray]:
    """Unit-cell surface elements of one code as normals whose length is their size.

    2D: each contour segment v becomes its perpendicular (v1, -v0), so that under a
    spacing s its length is ||normal * (s1, s0)||, the same rule as 3D's area vectors
    scaled by (s1*s2, s0*s2, s0*s1).
    """
    segments = [s for face in _faces(ndim) for s in _face_segments(code, face)]
    if ndim == 2:
        return [np.array([b[1] - a[1], a[0] - b[0]]) for a, b in segments]
    return [n for poly in _chain(segments) for n in _polygon_normals(poly)]


@functools.cache
def _unit_normals(ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes (K,), normals (K, ndim)) for every surface element of every code."""
    codes, normals = [], []
    for code in range(1, 2 ** (2**ndim) - 1):
        for normal in _code_normals(code, ndim):
            codes.append(code)
            normals.append(normal)
    return np.array(codes, dtype=np.intp), np.array(normals, dtype=np.float64)


def surface_area_table(spacing: Sequence[float]) -> np.ndarray:
    """Contour length (2D, 16 entries) or surface area (3D, 256 entries) per code.

    ``spacing`` has 2 or 3 entries, one per array axis. Code bits: the corner at offset
    o in {0,1}^ndim of the 2x2(x2) cell has weight 2**(2**ndim - 1 - rank(o)) with
    rank(o) = o read as a binary number, i.e. DeepMind's kernels [[8,4],[2,1]] and
    [[[128,64],[32,16]],[[8,4],[2,1]]].
    """
    sp = np.asarray(spacing, dtype=np.float64)
    ndim = sp.size
    if ndim not in (2, 3):
        raise ValueError(f"spacing must have 2 or 3 entries, got {ndim}")
    codes, normals = _unit_normals(ndim)
    scale = np.prod(sp) / sp
    sizes = np.linalg.norm(normals * scale, axis=1)
    return np.bincount(codes, weights=sizes, minlength=2 ** (2**ndim))


# --------------------------------------------------------------------------- helpers


def _as_mask_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    return a.astype(bool, copy=False), b.astype(bool, copy=False)


def _spacing_for(ndim: int, spacing: Sequence[float] | None) -> tuple[float, ...]:
    if ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D, got {ndim} dimensions")
    if spacing is None:
        return (1.0,) * ndim
    sp = tuple(float(s) for s in np.asarray(spacing, dtype=np.float64).ravel())
    if len(sp) != ndim:
        raise ValueError(f"spacing {sp} has {len(sp)} entries for {ndim}D masks")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing {sp} must be positive and finite")
    return sp


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the tight bounding box of a boolean mask, or None when it is empty."""
    boxes = _ndimage().find_objects(mask.astype(np.uint8))
    return boxes[0] if boxes else None


def _neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """Code of every corner of the voxel grid: shape = mask.shape + 1 on each axis.

    Corner i (per axis) sits between voxels i-1 and i; outside voxels count as empty.
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    codes = np.zeros(tuple(s + 1 for s in mask.shape), dtype=np.uint8)
    for rank, offset in enumerate(itertools.product((0, 1), repeat=mask.ndim)):
        window = tuple(slice(o, o + s + 1) for o, s in zip(offset, mask.shape, strict=True))
        codes |= padded[window] * np.uint8(_corner_weight(rank, mask.ndim))
    return codes


def _distance_to(border: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance from every grid corner to the nearest border corner (inf if none)."""
    if not border.any():
        return np.full(border.shape, np.inf)
    return _ndimage().distance_transform_edt(~border, sampling=spacing)


# --------------------------------------------------------------------------- metrics


def dice(pred_mask: np.ndarray, gt_mask: np.ndarray, *, empty_value: float = math.nan) -> float:
    """Dice coefficient 2|P & G| / (|P| + |G|) of two same-shape masks (any shape).

    Nonzero counts as inside. When both masks are empty the result is ``empty_value``,
    NaN by default: the challenge's convention (DeepMind's ``compute_dice_coefficient``,
    used by the challenge's ``compute_metrics.py``, returns NaN there).
    """
    pred, gt = _as_mask_pair(pred_mask, gt_mask)
    total = np.count_nonzero(pred) + np.count_nonzero(gt)
    if total == 0:
        return float(empty_value)
    return 2.0 * np.count_nonzero(pred & gt) / total


def agreement_dice(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Dice between two models' masks for one box; two empty masks agree fully (1.0)."""
    return dice(mask_a, mask_b, empty_value=1.0)


@dataclass(frozen=True)
class SurfaceDistances:
    """Per-surface-element distances (physical units) and sizes, in no particular order.

    ``distances_gt_to_pred[k]`` is the distance from gt surface element k (size
    ``surfel_areas_gt[k]``: contour length in 2D, area in 3D) to the pred surface;
    inf when pred has no surface. Likewise the other way round.
    """

    distances_gt_to_pred: np.ndarray
    distances_pred_to_gt: np.ndarray
    surfel_areas_gt: np.ndarray
    surfel_areas_pred: np.ndarray


def surface_distances(
    pred_mask: np.ndarray, gt_mask: np.ndarray, spacing: Sequence[float] | None = None
) -> SurfaceDistances:
    """DeepMind's ``compute_surface_distances`` for 2D (H,W) or 3D (D,H,W) masks.

    ``spacing`` has one entry per axis (default all 1). Both masks empty: all arrays
    are empty.
    """
    pred, gt = _as_mask_pair(pred_mask, gt_mask)
    sp = _spacing_for(gt.ndim, spacing)
    box = _bbox(pred | gt)
    if box is None:
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty)
    codes_gt, codes_pred = _neighbour_codes(gt[box]), _neighbour_codes(pred[box])
    full = 2 ** (2**gt.ndim) - 1
    border_gt = (codes_gt != 0) & (codes_gt != full)
    border_pred = (codes_pred != 0) & (codes_pred != full)
    table = surface_area_table(sp)
    return SurfaceDistances(
        distances_gt_to_pred=_distance_to(border_pred, sp)[border_gt],
        distances_pred_to_gt=_distance_to(border_gt, sp)[border_pred],
        surfel_areas_gt=table[codes_gt[border_gt]],
        surfel_areas_pred=table[codes_pred[border_pred]],
    )


def surface_dice_at_tolerance(distances: SurfaceDistances, tolerance: float) -> float:
    """DeepMind's ``compute_surface_dice_at_tolerance``; NaN when there is no surface."""
    total = distances.surfel_areas_gt.sum() + distances.surfel_areas_pred.sum()
    if total == 0:
        return math.nan
    near_gt = distances.surfel_areas_gt[distances.distances_gt_to_pred <= tolerance].sum()
    near_pred = distances.surfel_areas_pred[distances.distances_pred_to_gt <= tolerance].sum()
    return float((near_gt + near_pred) / total)


def normalized_surface_dice(
    pred_mask: np.ndarray,
    gt_mask: np.ndarray,
    spacing: Sequence[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> float:
    """Normalised surface Dice of 2D (H,W) or 3D (D,H,W) masks at ``tolerance``.

    ``spacing``: one entry per axis, in the units of ``tolerance`` (default all 1, i.e.
    pixels). Both masks empty: NaN (as DeepMind's 0/0); exactly one empty: 0.0.
    """
    return surface_dice_at_tolerance(surface_distances(pred_mask, gt_mask, spacing), tolerance)


# --------------------------------------------------------------------------- cases


def _label_arrays(segs: np.ndarray, gts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    segs, gts = np.asarray(segs), np.asarray(gts)
    if segs.shape != gts.shape:
        raise ValueError(f"segs shape {segs.shape} differs from gts shape {gts.shape}")
    for name, arr in (("segs", segs), ("gts", gts)):
        if arr.dtype.kind not in "biu":
            raise ValueError(f"{name} must be an integer label map, got dtype {arr.dtype}")
    return segs.astype(np.uint8) if segs.dtype == bool else segs, (gts.astype(np.uint8) if gts.dtype == bool else gts)


def _label_crops(segs: np.ndarray, gts: np.ndarray) -> list[tuple[int, np.ndarray | None, np.ndarray | None]]:
    """Per label 1..max(gts): (label, seg mask, gt mask) cropped to their joint bbox.

    The masks are None when the label is in neither array.
    """
    n = int(gts.max()) if gts.size else 0
    if n <= 0:
        return []
    boxes_gt = _ndimage().find_objects(gts, max_label=n)
    boxes_seg = _ndimage().find_objects(segs, max_label=n)
    out: list[tuple[int, np.ndarray | None, np.ndarray | None]] = []
    for label, (bg, bs) in enumerate(zip(boxes_gt, boxes_seg, strict=True), start=1):
        present = [b for b in (bg, bs) if b is not None]
        if not present:
            out.append((label, None, None))
            continue
        box = tuple(slice(min(b[d].start for b in present), max(b[d].stop for b in present)) for d in range(gts.ndim))
        out.append((label, segs[box] == label, gts[box] == label))
    return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def case_scores(
    segs: np.ndarray,
    gts: np.ndarray,
    spacing: Sequence[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict:
    """Per-label DSC and NSD of one case, as this toolkit reports them (PIPELINE.md).

    ``segs`` and ``gts``: same-shape integer label maps, (H,W) or (D,H,W). Labels are
    1..max(gts). NSD is computed only where that label's DSC > 0.2, else 0.0. ``spacing``
    defaults to 1 per axis (2D cases are scored in pixels). A label present in neither
    map gets NaN for both and is left out of the means. Returns ``{"dsc": mean,
    "nsd": mean, "labels": [...], "dsc_per_label": [...], "nsd_per_label": [...]}``
    (means are NaN when there is no label).

    The challenge's own script differs: see ``challenge_case_scores``.
    """
    segs, gts = _label_arrays(segs, gts)
    sp = _spacing_for(gts.ndim, spacing)
    labels, dscs, nsds = [], [], []
    for label, seg_mask, gt_mask in _label_crops(segs, gts):
        if seg_mask is None or gt_mask is None:
            dsc = nsd = math.nan
        else:
            dsc = dice(seg_mask, gt_mask)
            nsd = normalized_surface_dice(seg_mask, gt_mask, sp, tolerance)
            nsd = nsd if dsc > NSD_DSC_THRESHOLD else 0.0
        labels.append(label)
        dscs.append(dsc)
        nsds.append(nsd)
    return {
        "dsc": _mean(dscs),
        "nsd": _mean(nsds),
        "labels": labels,
        "dsc_per_label": dscs,
        "nsd_per_label": nsds,
    }


def challenge_case_scores(
    segs: np.ndarray,
    gts: np.ndarray,
    spacing: Sequence[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict:
    """DSC and NSD exactly as the CVPR24 challenge's ``compute_metrics.py`` computes them.

    Differences from ``case_scores``: the DSC > 0.2 gate is on the case's mean DSC (all
    labels' NSDs are computed, or NSD = 0.0 for the whole case); a 2D (H,W) case is
    scored as an (H,W,1) volume with spacing (1,1,1) (its ``SurfaceDice.py`` is 3D
    only); and a label 1..max(gts) present in neither map makes the means NaN.
    Same return keys as ``case_scores``; ``nsd_per_label`` is all 0.0 when gated.
    """
    segs, gts = _label_arrays(segs, gts)
    is_2d = gts.ndim == 2
    sp = (1.0, 1.0, 1.0) if is_2d else _spacing_for(3, spacing)
    crops = _label_crops(segs, gts)
    labels = [label for label, _, _ in crops]
    dscs = [math.nan if g is None else dice(s, g) for _, s, g in crops]
    mean_dsc = float(np.mean(dscs)) if dscs else math.nan
    if not mean_dsc > NSD_DSC_THRESHOLD:
        nsds = [0.0] * len(crops)
        return _challenge_result(mean_dsc, 0.0, labels, dscs, nsds)
    nsds = []
    for _, seg_mask, gt_mask in crops:
        if gt_mask is None or seg_mask is None:
            nsds.append(math.nan)
            continue
        if is_2d:
            seg_mask, gt_mask = seg_mask[..., None], gt_mask[..., None]
        nsds.append(normalized_surface_dice(seg_mask, gt_mask, sp, tolerance))
    return _challenge_result(mean_dsc, float(np.mean(nsds)), labels, dscs, nsds)


def _challenge_result(dsc: float, nsd: float, labels: list[int], dscs: list[float], nsds: list[float]) -> dict:
    return {"dsc": dsc, "nsd": nsd, "labels": labels, "dsc_per_label": dscs, "nsd_per_label": nsds}
