"""Metrics on cases whose answers are worked out by hand or counted independently."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from msam_export.metrics import (
    agreement_dice,
    case_scores,
    challenge_case_scores,
    dice,
    normalized_surface_dice,
    surface_area_table,
    surface_distances,
)

SQRT2, SQRT3 = math.sqrt(2.0), math.sqrt(3.0)


def disk(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def ball(shape: tuple[int, int, int], center: tuple[float, ...], radius: float) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return (zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2 <= radius**2


def set_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice from Python sets of coordinates: independent of the code under test."""
    sa, sb = set(zip(*np.nonzero(a), strict=True)), set(zip(*np.nonzero(b), strict=True))
    return 2 * len(sa & sb) / (len(sa) + len(sb))


def square(n: int, pad: int, grow: int = 0) -> np.ndarray:
    """An n x n square at offset pad, grown by ``grow`` pixels on every side."""
    mask = np.zeros((n + 2 * pad, n + 2 * pad), dtype=bool)
    mask[pad - grow : pad + n + grow, pad - grow : pad + n + grow] = True
    return mask


# --------------------------------------------------------------------------- dice


def test_dice_basic_values() -> None:
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b = np.zeros((4, 4), bool)
    b[1:3] = True  # 8 pixels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(a, np.zeros_like(a)) == 0.0


def test_dice_both_empty_is_nan_but_agreement_is_one() -> None:
    empty = np.zeros((3, 3), bool)
    assert math.isnan(dice(empty, empty))
    assert agreement_dice(empty, empty) == 1.0
    assert agreement_dice(empty, ~empty) == 0.0


def test_dice_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))


# --------------------------------------------------------------------------- lookup tables


def test_2d_contour_lengths_by_hand() -> None:
    s0, s1 = 2.0, 3.0  # vertical (axis 0) and horizontal (axis 1) spacing
    table = surface_area_table((s0, s1))
    half_diag = 0.5 * math.hypot(s0, s1)
    # bits: 8 top-left, 4 top-right, 2 bottom-left, 1 bottom-right
    for code in (0b0001, 0b0010, 0b0100, 0b1000, 0b1110, 0b1101, 0b1011, 0b0111):
        assert table[code] == pytest.approx(half_diag)
    assert table[0b0011] == pytest.approx(s1)  # bottom row in: horizontal line
    assert table[0b1100] == pytest.approx(s1)
    assert table[0b0101] == pytest.approx(s0)  # right column in: vertical line
    assert table[0b1010] == pytest.approx(s0)
    assert table[0b1001] == pytest.approx(2 * half_diag)  # saddles: two corners cut
    assert table[0b0110] == pytest.approx(2 * half_diag)
    assert table[0] == table[15] == 0.0


def test_3d_surface_areas_by_hand() -> None:
    s = (2.0, 3.0, 5.0)
    table = surface_area_table(s)
    # kernel [[[128,64],[32,16]],[[8,4],[2,1]]]: bit 128 is corner (0,0,0), bit 1 (1,1,1)
    corner_triangle = 0.125 * math.sqrt((s[1] * s[2]) ** 2 + (s[0] * s[2]) ** 2 + (s[0] * s[1]) ** 2)
    assert table[0b10000000] == pytest.approx(corner_triangle)
    assert table[0b00000001] == pytest.approx(corner_triangle)
    # corners (0,0,0),(0,0,1): an edge along axis 2 cut by a rectangle
    assert table[0b11000000] == pytest.approx(s[2] * 0.5 * math.hypot(s[0], s[1]))
    # the four corners with axis-0 index 0: a flat face of size s1 x s2
    assert table[0b11110000] == pytest.approx(s[1] * s[2])
    assert table[0b10101010] == pytest.approx(s[0] * s[1])  # axis-2 index 0
    iso = surface_area_table((1.0, 1.0, 1.0))
    # corner (1,1,1) and its 3 neighbours: a planar regular hexagon of side sqrt(1/2)
    assert iso[0b00010111] == pytest.approx(3 * SQRT3 / 4)
    # three corners of a face: non-planar pentagon; DeepMind's table splits it into
    # triangles of area 1/2, sqrt(3)/4 and sqrt(3)/8 (its entry for this code)
    assert iso[0b00000111] == pytest.approx(0.5 + 3 * SQRT3 / 8)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 2.0, 4.5)])
def test_3d_table_is_complement_symmetric(spacing: tuple[float, float, float]) -> None:
    table = surface_area_table(spacing)
    assert np.allclose(table, table[::-1])  # code c and 255 - c bound the same surface
    assert table[0] == table[255] == 0.0
    assert (table[1:255] > 0).all()


def test_box_of_voxels_has_the_hand_computed_surface_area() -> None:
    n, s = (4, 5, 6), (2.0, 3.0, 0.5)
    mask = np.zeros((8, 9, 10), bool)
    mask[2 : 2 + n[0], 2 : 2 + n[1], 2 : 2 + n[2]] = True
    faces = 2 * sum((n[a] - 1) * (n[b] - 1) * s[a] * s[b] for a, b in ((1, 2), (0, 2), (0, 1)))
    edges = 4 * sum((n[a] - 1) * s[a] * 0.5 * math.hypot(s[b], s[c]) for a, b, c in ((0, 1, 2), (1, 0, 2), (2, 0, 1)))
    corners = math.sqrt((s[1] * s[2]) ** 2 + (s[0] * s[2]) ** 2 + (s[0] * s[1]) ** 2)
    area = surface_distances(mask, mask, s).surfel_areas_gt.sum()
    assert area == pytest.approx(faces + edges + corners)


def test_square_contour_length() -> None:
    n = 7
    lengths = surface_distances(square(n, 3), square(n, 3)).surfel_areas_gt
    assert lengths.sum() == pytest.approx(4 * (n - 1) + 2 * SQRT2)


def test_round_shapes_approximate_perimeter_and_area() -> None:
    # marching squares/cubes through edge midpoints of a binary staircase overestimate
    # a round boundary by a few percent (about 6-7% here), never underestimate it
    r = 12.0
    circle = disk((31, 31), (15, 15), r)
    perimeter = surface_distances(circle, circle).surfel_areas_gt.sum()
    assert 1.0 < perimeter / (2 * math.pi * r) < 1.1
    sphere = ball((29, 29, 29), (14, 14, 14), r)
    area = surface_distances(sphere, sphere).surfel_areas_gt.sum()
    assert 1.0 < area / (4 * math.pi * r**2) < 1.1


def test_nsd_is_invariant_under_axis_permutation_and_flips() -> None:
    rng = np.random.default_rng(0)
    gt = ball((14, 16, 18), (7, 8, 9), 5.5) & (rng.random((14, 16, 18)) > 0.1)
    pred = np.roll(ball((14, 16, 18), (7, 8, 9), 5.0), 1, axis=2)
    spacing = (1.3, 0.6, 2.2)
    ref = normalized_surface_dice(pred, gt, spacing, tolerance=1.5)
    assert 0.0 < ref < 1.0
    for perm in itertools.permutations(range(3)):
        sp = tuple(spacing[p] for p in perm)
        got = normalized_surface_dice(pred.transpose(perm), gt.transpose(perm), sp, 1.5)
        assert got == pytest.approx(ref, abs=1e-12)
    flipped = normalized_surface_dice(pred[::-1, :, ::-1], gt[::-1, :, ::-1], spacing, 1.5)
    assert flipped == pytest.approx(ref, abs=1e-12)


# --------------------------------------------------------------------------- NSD


def test_identical_masks_2d_and_3d() -> None:
    d = disk((30, 30), (14, 15), 8)
    b = ball((16, 18, 20), (8, 9, 10), 5)
    assert dice(d, d) == 1.0 and normalized_surface_dice(d, d) == 1.0
    assert dice(b, b) == 1.0 and normalized_surface_dice(b, b, (2.0, 1.0, 1.0)) == 1.0


def test_disjoint_masks_2d_and_3d() -> None:
    a = disk((40, 60), (20, 12), 6)
    b = disk((40, 60), (20, 45), 6)  # 21 px gap, far beyond the tolerance
    assert dice(a, b) == 0.0 and normalized_surface_dice(a, b) == 0.0
    va = ball((12, 12, 40), (6, 6, 8), 4)
    vb = ball((12, 12, 40), (6, 6, 30), 4)
    assert dice(va, vb) == 0.0 and normalized_surface_dice(va, vb, (1.0, 1.0, 1.0)) == 0.0


def test_nsd_empty_masks() -> None:
    empty = np.zeros((5, 5), bool)
    assert math.isnan(normalized_surface_dice(empty, empty))
    some = empty.copy()
    some[2, 2] = True
    assert normalized_surface_dice(some, empty) == 0.0
    assert normalized_surface_dice(empty, some) == 0.0


@pytest.mark.parametrize("shift", [1, 2, 3, 4])
def test_shifted_disk(shift: int) -> None:
    gt = disk((40, 50), (20, 20), 10)
    pred = np.roll(gt, shift, axis=1)
    assert dice(pred, gt) == pytest.approx(set_dice(pred, gt))
    # the shifted surface is the same surface moved by `shift` px: every surface
    # element is exactly `shift` px from its copy, and the leftmost point of gt is
    # `shift` px from pred's circle
    nsd = normalized_surface_dice(pred, gt, (1.0, 1.0), tolerance=2.0)
    if shift <= 2:
        assert nsd == 1.0
    else:
        assert nsd < 1.0


def test_anisotropic_spacing_changes_the_verdict() -> None:
    gt = disk((40, 50), (20, 22), 10)
    pred = np.roll(gt, 2, axis=1)  # 2 steps along axis 1 (x)
    assert normalized_surface_dice(pred, gt, (1.0, 0.5)) == 1.0  # 1.0 mm <= 2 mm
    assert normalized_surface_dice(pred, gt, (0.5, 1.5)) < 1.0  # 3.0 mm > 2 mm
    down = np.roll(gt, 2, axis=0)  # the same shift along axis 0 (y) is 1.0 mm there
    assert normalized_surface_dice(down, gt, (0.5, 1.5)) == 1.0


def test_shifted_ball_3d_with_slice_spacing() -> None:
    gt = ball((20, 24, 24), (9, 12, 12), 6)
    pred = np.roll(gt, 1, axis=0)  # one slice along z
    assert dice(pred, gt) == pytest.approx(set_dice(pred, gt))
    assert normalized_surface_dice(pred, gt, (1.5, 1.0, 1.0)) == 1.0  # 1.5 mm
    assert normalized_surface_dice(pred, gt, (3.0, 1.0, 1.0)) < 1.0  # 3 mm
    assert normalized_surface_dice(pred, gt, (3.0, 1.0, 1.0), tolerance=3.0) == 1.0


def test_square_grown_by_one_pixel_exact_nsd() -> None:
    n = 10
    gt, pred = square(n, 4), square(n, 4, grow=1)
    assert dice(pred, gt) == pytest.approx(2 * n * n / (n * n + (n + 2) ** 2))
    # Contours through pixel-corner points: an n-square has 4(n-1) unit segments and
    # 4 corner diagonals of sqrt(2)/2. Grown by one, every contour point is 1 px from
    # the other contour, except pred's 4 corner points, sqrt(2) px from gt's corners.
    len_gt = 4 * (n - 1) + 2 * SQRT2
    len_pred = 4 * (n + 1) + 2 * SQRT2
    pred_corners = 4 * SQRT2 / 2
    assert normalized_surface_dice(pred, gt, tolerance=0.9) == 0.0
    expected = (len_gt + len_pred - pred_corners) / (len_gt + len_pred)
    assert normalized_surface_dice(pred, gt, tolerance=1.2) == pytest.approx(expected)
    assert normalized_surface_dice(pred, gt, tolerance=1.5) == 1.0


def test_surface_distances_rejects_bad_spacing() -> None:
    m = np.ones((3, 3), bool)
    with pytest.raises(ValueError, match="entries"):
        normalized_surface_dice(m, m, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        normalized_surface_dice(m, m, (1.0, 0.0))
    with pytest.raises(ValueError, match="2D or 3D"):
        normalized_surface_dice(np.ones(4, bool), np.ones(4, bool))


# --------------------------------------------------------------------------- cases


def test_case_scores_low_dice_label_gets_zero_nsd_2d() -> None:
    gts = np.zeros((30, 60), np.uint8)
    segs = np.zeros_like(gts)
    gts[5:15, 5:15] = 1
    segs[5:15, 5:15] = 1  # label 1 perfect
    gts[5:15, 30:40] = 2
    segs[5:15, 39:49] = 2  # label 2 overlaps by one column: DSC 0.1
    scores = case_scores(segs, gts)
    assert scores["labels"] == [1, 2]
    assert scores["dsc_per_label"] == pytest.approx([1.0, 0.1])
    assert normalized_surface_dice(segs == 2, gts == 2) > 0  # gated, not zero by itself
    assert scores["nsd_per_label"] == [1.0, 0.0]
    assert scores["dsc"] == pytest.approx(0.55)
    assert scores["nsd"] == pytest.approx(0.5)


def test_case_scores_low_dice_gets_zero_nsd_3d() -> None:
    gts = np.zeros((8, 20, 20), np.uint8)
    gts[2:6, 4:14, 4:8] = 1  # 4 columns along x
    shifted = np.roll(gts, 3, axis=2)  # 1 of 4 columns shared: DSC 0.25
    scores = case_scores(shifted, gts, (1.0, 1.0, 1.0))
    assert scores["dsc"] == pytest.approx(0.25)
    assert 0.0 < scores["nsd"] < 1.0
    wide = np.zeros_like(gts)
    wide[2:6, 4:14, 7:13] = 1  # 6 columns, 1 shared: DSC = 2*1/(4+6) = 0.2 exactly
    assert normalized_surface_dice(wide == 1, gts == 1, (1.0, 1.0, 1.0)) > 0.0
    scores = case_scores(wide, gts, (1.0, 1.0, 1.0))
    assert scores["dsc"] == pytest.approx(0.2)
    assert scores["nsd"] == 0.0  # the gate is DSC > 0.2


def test_case_scores_label_missing_from_both_is_skipped() -> None:
    gts = np.zeros((10, 10), np.uint16)
    gts[1:4, 1:4] = 1
    gts[6:9, 6:9] = 3  # label 2 appears nowhere
    scores = case_scores(gts.copy(), gts)
    assert scores["labels"] == [1, 2, 3]
    assert math.isnan(scores["dsc_per_label"][1]) and math.isnan(scores["nsd_per_label"][1])
    assert scores["dsc"] == 1.0 and scores["nsd"] == 1.0
    empty = case_scores(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    assert empty["labels"] == [] and math.isnan(empty["dsc"])


def test_case_scores_uses_spacing_in_3d() -> None:
    gts = ball((20, 24, 24), (9, 12, 12), 6).astype(np.uint8)
    segs = np.roll(gts, 1, axis=0)
    assert case_scores(segs, gts, (1.5, 1.0, 1.0))["nsd"] == 1.0
    assert case_scores(segs, gts, (3.0, 1.0, 1.0))["nsd"] < 1.0


def test_challenge_scores_gate_on_the_case_mean() -> None:
    gts = np.zeros((30, 60), np.uint8)
    segs = np.zeros_like(gts)
    gts[5:15, 5:15] = 1
    segs[5:15, 5:15] = 1
    gts[5:15, 30:40] = 2
    segs[5:15, 39:49] = 2  # DSC 0.1, but the case mean is 0.55
    scores = challenge_case_scores(segs, gts)
    assert scores["dsc"] == pytest.approx(0.55)
    assert scores["nsd_per_label"][1] > 0.0
    # label 1 at DSC 0.3 and label 2 at 0: the mean 0.15 gates the whole case
    segs = np.zeros_like(gts)
    segs[5:15, 12:22] = 1
    segs[5:15, 45:55] = 2
    assert case_scores(segs, gts)["nsd_per_label"][0] > 0.0
    low = challenge_case_scores(segs, gts)
    assert low["dsc"] == pytest.approx(0.15)
    assert low["nsd"] == 0.0 and low["nsd_per_label"] == [0.0, 0.0]


def test_challenge_scores_2d_as_one_slice_volume() -> None:
    n = 10
    gt, pred = square(n, 4).astype(np.uint8), square(n, 4, grow=1).astype(np.uint8)

    # As an (H,W,1) slab with spacing 1, every grid corner of the slab's two faces is
    # a surface point: interior corners carry a unit face, side corners an edge strip
    # sqrt(2)/2, and the 4 corners a triangle sqrt(3)/8. gt's corner grid lies inside
    # pred's (distance 0); only pred's outer ring (>= 1 px from gt) misses tol 0.9.
    def slab_area(m: int) -> float:
        return (m - 1) ** 2 + 4 * (m - 1) * SQRT2 / 2 + 4 * SQRT3 / 8

    expected = (slab_area(n) + (n + 1) ** 2) / (slab_area(n) + slab_area(n + 2))
    scores = challenge_case_scores(pred, gt, tolerance=0.9)
    assert scores["nsd"] == pytest.approx(expected)
    assert case_scores(pred, gt, tolerance=0.9)["nsd"] == 0.0  # 2D contours: all 1 px off


def test_challenge_scores_missing_label_makes_nan() -> None:
    gts = np.zeros((10, 10), np.uint8)
    gts[1:4, 1:4] = 1
    gts[6:9, 6:9] = 3
    assert math.isnan(challenge_case_scores(gts.copy(), gts)["dsc"])


def test_case_scores_rejects_mismatched_maps() -> None:
    with pytest.raises(ValueError, match="shape"):
        case_scores(np.zeros((3, 3), np.uint8), np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        case_scores(np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8))


def _official_scores() -> list:
    """The challenge's own ``compute_metrics.py`` run on its official LiteMedSAM outputs."""
    import csv

    from conftest import FIXTURES

    with open(FIXTURES / "challenge-metrics-official.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [pytest.param(r["case"], float(r["dsc"]), float(r["nsd"]), id=r["case"]) for r in rows]


def _official_case(name: str) -> tuple:
    """(official segs, gts, spacing) of a case, from the bundled samples or ../shared."""
    from conftest import FIXTURES, REPO, SHARED_DATA, SHARED_GOLDEN

    samples = REPO / "msam_export" / "samples"
    for segs_dir, data in (
        (FIXTURES / "litemedsam-official", samples),
        (SHARED_GOLDEN / "litemedsam-official", SHARED_DATA),
    ):
        segs, gts, imgs = segs_dir / name, data / "gts" / name, data / "imgs" / name
        if segs.is_file() and gts.is_file() and imgs.is_file():
            with np.load(imgs) as case:
                spacing = tuple(case["spacing"]) if "spacing" in case.files else None
            return np.load(segs)["segs"], np.load(gts)["gts"], spacing
    pytest.skip(f"{name}: official segs or gts absent (../shared not present)")


@pytest.mark.parametrize("name,dsc,nsd", _official_scores())
def test_challenge_scores_match_the_official_script(name: str, dsc: float, nsd: float) -> None:
    segs, gts, spacing = _official_case(name)
    scores = challenge_case_scores(segs, gts, spacing)
    assert scores["dsc"] == pytest.approx(dsc, abs=1e-9)
    assert scores["nsd"] == pytest.approx(nsd, abs=1e-9)
