"""Tests of the shared inference contract (msam_export.contract)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from msam_export.contract import (
    Propagation,
    area_resize,
    bilinear_uint8,
    mask_to_box,
    paint_labels,
    postprocess,
    preprocess,
    prompt_arrays,
    resized_shape,
    transform_boxes,
    transform_points,
)


def _pattern(shape: tuple[int, ...]) -> np.ndarray:
    """A deterministic, busy uint8 image that does not depend on numpy's RNG."""
    n = int(np.prod(shape))
    return ((np.arange(n, dtype=np.int64) * 2654435761) % 251).astype(np.uint8).reshape(shape)


def _random(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --- resized_shape ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "size", "expected"),
    [
        (540, 800, 512, (346, 512)),  # 540*512/800 = 345.6 -> 346
        (725, 725, 256, (256, 256)),
        (300, 451, 256, (170, 256)),  # 170.29 -> 170
        (601, 333, 256, (256, 142)),  # 141.84 -> 142
        (100, 200, 256, (128, 256)),
        (3, 5, 256, (154, 256)),  # upscaling: 153.6 -> 154
        (1, 2, 3, (2, 3)),  # exactly 1.5 rounds up
        (512, 300, 512, (512, 300)),
    ],
)
def test_resized_shape(h: int, w: int, size: int, expected: tuple[int, int]) -> None:
    assert resized_shape(h, w, size) == expected


# --- preprocess -----------------------------------------------------------------------


@pytest.mark.parametrize(("size", "rule"), [(512, "bilinear"), (256, "area")])
def test_no_resize_when_longest_side_is_size(size: int, rule: str) -> None:
    image = _random((size, 150, 3))
    x, hw = preprocess(image, size, rule)
    assert hw == (size, 150)
    lo, hi = float(image.min()), float(image.max())
    expected = ((image.astype(np.float32) - lo) / np.float32(hi - lo)).transpose(2, 0, 1)
    np.testing.assert_array_equal(x[0, :, :, :150], expected)
    assert not x[0, :, :, 150:].any()


@pytest.mark.parametrize(("size", "rule"), [(512, "bilinear"), (256, "area")])
def test_min_max_range_and_zero_padding(size: int, rule: str) -> None:
    image = (_random((270, 400, 3), seed=1) // 2 + 40).astype(np.uint8)  # range 40..167
    x, (h, w) = preprocess(image, size, rule)
    assert x.shape == (1, 3, size, size) and x.dtype == np.float32
    assert (h, w) == resized_shape(270, 400, size)
    valid = x[0, :, :h, :w]
    assert valid.min() == 0.0 and valid.max() == 1.0
    assert not x[0, :, h:, :].any() and not x[0, :, :, w:].any()


@pytest.mark.parametrize(("size", "rule"), [(512, "bilinear"), (256, "area")])
def test_constant_image_does_not_divide_by_zero(size: int, rule: str) -> None:
    x, _ = preprocess(np.full((100, 70), 200, np.uint8), size, rule)
    assert np.isfinite(x).all() and not x.any()


@pytest.mark.parametrize(("size", "rule"), [(512, "bilinear"), (256, "area")])
def test_grey_layouts_equal_repeated_rgb(size: int, rule: str) -> None:
    grey = _random((123, 77), seed=2)
    rgb, hw = preprocess(np.repeat(grey[:, :, None], 3, axis=2), size, rule)
    for image in (grey, grey[:, :, None]):
        x, hw2 = preprocess(image, size, rule)
        assert hw2 == hw
        np.testing.assert_array_equal(x, rgb)


def test_bilinear_matches_independent_torch_call() -> None:
    image = _random((540, 800, 3), seed=3)
    # What the original code does: uint8 NCHW tensor, F.interpolate, min-max in torch.
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
    resized = F.interpolate(tensor, (346, 512), mode="bilinear", align_corners=False)
    assert resized.dtype == torch.uint8  # torch keeps uint8 and rounds itself
    resized = resized.float()
    lo, hi = resized.min(), resized.max()
    ref = (resized - lo) / torch.clamp(hi - lo, min=1e-8)
    x, hw = preprocess(image, 512, "bilinear")
    assert hw == (346, 512)
    np.testing.assert_array_equal(x[:, :, :346, :512], ref.numpy())


def test_torch_uint8_bilinear_is_not_rounded_float_bilinear() -> None:
    """Why the uint8 path must be kept: fixed point differs from float by up to 1."""
    tensor = torch.from_numpy(_random((1, 3, 57, 91), seed=4))
    u8 = F.interpolate(tensor, (37, 59), mode="bilinear", align_corners=False)
    fl = F.interpolate(tensor.float(), (37, 59), mode="bilinear", align_corners=False)
    diff = (u8.float() - fl.round()).abs()
    assert diff.max() <= 1 and diff.max() > 0


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((10, 10), np.float32),
        np.zeros((10, 10), np.uint16),
        np.zeros((1, 10, 10, 3), np.uint8),
        np.zeros((10,), np.uint8),
        np.zeros((10, 10, 2), np.uint8),
        np.zeros((0, 10), np.uint8),
    ],
)
def test_preprocess_rejects_bad_images(image: np.ndarray) -> None:
    with pytest.raises(ValueError):
        preprocess(image, 256, "area")


def test_preprocess_rejects_unknown_rule() -> None:
    with pytest.raises(ValueError):
        preprocess(np.zeros((10, 10), np.uint8), 256, "nearest")


# --- INTER_AREA ----------------------------------------------------------------------


def _area(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return area_resize(image[:, :, None], hw)[:, :, 0]


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_area_integer_factor_is_block_mean(factor: int) -> None:
    image = _random((12 * factor, 8 * factor, 3), seed=factor)
    got = area_resize(image, (12, 8))
    mean = image.reshape(12, factor, 8, factor, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(got - mean).max() <= 0.5
    if factor == 3:  # a 9-pixel mean never ties: plain rounding
        np.testing.assert_array_equal(got, np.rint(mean))


def test_area_integer_factor_tie_rounding() -> None:
    # OpenCV rounds a 2x2 mean half up ((sum + 2) >> 2) and other block means half to
    # even (cvRound of sum * 1/area): means 0.5 and 1.5 -> 1, 2 (2x2) and 0, 2 (4x4).
    two = np.zeros((2, 4), np.uint8)
    two[0, 0], two[0, 2] = 2, 6
    np.testing.assert_array_equal(_area(two, (1, 2)), [[1, 2]])
    four = np.zeros((4, 8), np.uint8)
    four[0, 0], four[0, 4] = 8, 24
    np.testing.assert_array_equal(_area(four, (1, 2)), [[0, 2]])


def test_area_non_integer_downscale_by_hand() -> None:
    # 3x3 -> 2x2, scale 1.5: output (0,0) takes pixel 0 with weight 2/3 and pixel 1
    # with weight 1/3 on each axis. (0,0): 10*4/9 + 9*1/9 = 5.44 -> 5;
    # (1,1): 20*4/9 + 9*1/9 = 9.89 -> 10; (0,1), (1,0): only the centre, 9/9 = 1.
    image = np.array([[10, 0, 0], [0, 9, 0], [0, 0, 20]], np.uint8)
    np.testing.assert_array_equal(_area(image, (2, 2)), [[5, 1], [1, 10]])


def test_area_upscale_uses_area_coefficients() -> None:
    # INTER_AREA upscaling: sx = floor(dx*scale), fx = (dx+1) - (sx+1)/scale, clipped
    # to [0, 1): 2 -> 5 gives weights on (p0, p1): 1, 1, 1/2, 0(p1), 0(p1), so unlike
    # INTER_LINEAR (0, 0.1p1, 0.5p1, 0.9p1, p1) only one output pixel blends.
    np.testing.assert_array_equal(_area(np.array([[0, 100]], np.uint8), (1, 5)), [[0, 0, 50, 100, 100]])
    # 2x2 -> 3x3: the centre is (0 + 100 + 200 + 50) / 4 = 87.5, fixed point rounds up.
    got = _area(np.array([[0, 100], [200, 50]], np.uint8), (3, 3))
    np.testing.assert_array_equal(got, [[0, 50, 100], [100, 88, 75], [200, 125, 50]])


# Outputs of cv2.resize(_pattern((H, W)), (w, h), interpolation=cv2.INTER_AREA) with
# opencv-python-headless 4.14.0.94 (5.0.0.93 gives the same).
_CV2_SMALL = [
    (
        (9, 13),
        (4, 5),
        [[110, 118, 126, 122, 130], [124, 137, 140, 102, 132], [100, 145, 118, 131, 127], [106, 125, 128, 141, 106]],
    ),
    (
        (3, 4),
        (7, 10),
        [
            [0, 0, 35, 70, 70, 140, 140, 175, 210, 210],
            [0, 0, 35, 70, 70, 140, 140, 175, 210, 210],
            [19, 19, 54, 89, 89, 159, 159, 194, 229, 229],
            [29, 29, 64, 99, 99, 169, 169, 204, 239, 239],
            [39, 39, 74, 108, 108, 179, 179, 172, 165, 165],
            [58, 58, 93, 128, 128, 198, 198, 108, 17, 17],
            [58, 58, 93, 128, 128, 198, 198, 108, 17, 17],
        ],
    ),
    (
        (9, 5),
        (4, 8),
        [
            [55, 83, 125, 181, 181, 125, 101, 84],
            [97, 91, 83, 139, 133, 56, 98, 125],
            [222, 172, 97, 108, 125, 181, 106, 56],
            [180, 119, 27, 83, 105, 139, 181, 209],
        ],
    ),
    ((16, 12), (4, 3), [[126, 123, 121], [129, 110, 140], [116, 129, 127], [119, 132, 130]]),
    ((3, 5), (1, 3), [[94, 139, 133]]),
]
_CV2_SHA256 = [
    ((300, 451, 3), "7744a8dc8919a1de7bc4000694f5436fb64e70c3da515b9a64d9a87d5de6a5fa"),
    ((601, 333, 3), "9bcefe0d910826e8ddb68c7eb91eda6076c051269a81fdaf4783951a0ccddece"),
]


@pytest.mark.parametrize(("src", "dst", "expected"), _CV2_SMALL)
def test_area_matches_recorded_opencv_small(src, dst, expected) -> None:
    np.testing.assert_array_equal(_area(_pattern(src), dst), expected)


@pytest.mark.parametrize(("shape", "digest"), _CV2_SHA256)
def test_area_matches_recorded_opencv_realistic(shape, digest) -> None:
    out = area_resize(_pattern(shape), resized_shape(shape[0], shape[1], 256))
    assert hashlib.sha256(out.tobytes()).hexdigest() == digest


def test_area_matches_cv2_when_installed() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(5)
    shapes = [(int(a), int(b)) for a, b in rng.integers(1, 700, (30, 2))]
    pairs = [(s, resized_shape(*s, 256)) for s in shapes]
    pairs += [((int(a), int(b)), (int(c), int(d))) for a, b, c, d in rng.integers(1, 40, (60, 4))]
    for (h, w), dst in pairs:
        if min(dst) < 1:
            continue
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = cv2.resize(image, (dst[1], dst[0]), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(area_resize(image, dst), ref, err_msg=f"{(h, w)}->{dst}")


# --- boxes --------------------------------------------------------------------------


def test_transform_boxes_truncates() -> None:
    boxes = np.array([[0, 10, 799, 539], [100, 101, 102, 103]])
    got = transform_boxes(boxes, (540, 800), 512)  # ratio 0.64
    assert got.dtype == np.float32 and got.shape == (2, 4)
    np.testing.assert_array_equal(got, [[0, 6, 511, 344], [64, 64, 65, 65]])


def test_transform_boxes_ratio_first_and_toward_zero() -> None:
    # The ratio is computed first, as in the original resize_box, and that shows:
    # int(49 * (256 / 98)) == 127 and int(98 * (256 / 98)) == 255, although
    # 49 * 256 / 98 == 128 and 98 * 256 / 98 == 256.
    got = transform_boxes(np.array([[49, 0, 98, 0]]), (98, 50), 256)
    assert got.tolist() == [[127, 0, 255, 0]]
    assert transform_boxes(np.array([[-1.0, 0, 0, 0]]), (1000, 1000), 256)[0, 0] == 0


def test_transform_boxes_rejects_bad_shape() -> None:
    with pytest.raises(ValueError):
        transform_boxes(np.zeros((2, 3)), (10, 10), 256)


# --- postprocess --------------------------------------------------------------------


def _rect_logits(rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    logits = np.full((256, 256), -10.0, np.float32)
    logits[rows[0] : rows[1], cols[0] : cols[1]] = 10.0
    return logits


def test_postprocess_gives_rectangle_back_at_original_size() -> None:
    # Original 540x800, S=512: resized (346, 512), ratio 0.64; low-res pixels are 2x2 in
    # the S frame. Low-res rows [32, 96) and cols [64, 192) are original [100, 300) and
    # [200, 600); a second box low-res [0, 20) x [100, 256) -> original [0, 62.5) x
    # [312.5, 800).
    logits = np.stack([_rect_logits((32, 96), (64, 192)), _rect_logits((0, 20), (100, 256))])
    masks = postprocess(logits[:, None], (346, 512), (540, 800), 512)
    assert masks.shape == (2, 540, 800) and masks.dtype == np.bool_
    expected = np.zeros((540, 800), bool)
    expected[100:300, 200:600] = True
    _assert_within_one_pixel(masks[0], expected)
    expected = np.zeros((540, 800), bool)
    expected[0:62, 313:800] = True
    _assert_within_one_pixel(masks[1], expected)


def _assert_within_one_pixel(mask: np.ndarray, expected: np.ndarray) -> None:
    inner = np.zeros_like(expected)
    inner[1:-1, 1:-1] = expected[1:-1, 1:-1] & expected[:-2, 1:-1] & expected[2:, 1:-1]
    inner[1:-1, 1:-1] &= expected[1:-1, :-2] & expected[1:-1, 2:]
    outer = expected.copy()
    for axis in (0, 1):
        for shift in (-1, 1):
            outer |= np.roll(expected, shift, axis=axis)
    assert mask[inner].all() and not mask[~outer].any()


def test_postprocess_batch_equals_one_at_a_time() -> None:
    logits = np.random.default_rng(6).standard_normal((3, 1, 256, 256)).astype(np.float32)
    batch = postprocess(logits, (170, 256), (300, 451), 256)
    for i in range(3):
        np.testing.assert_array_equal(batch[i], postprocess(logits[i : i + 1], (170, 256), (300, 451), 256)[0])


# --- labels and boxes from masks -----------------------------------------------------


def test_paint_labels_later_boxes_overwrite() -> None:
    masks = np.zeros((3, 4, 5), bool)
    masks[0, :2, :3] = True
    masks[1, 1:3, 2:5] = True
    masks[2, 3, 0] = True
    segs = paint_labels(masks, (4, 5))
    assert segs.dtype == np.uint16
    np.testing.assert_array_equal(
        segs,
        [[1, 1, 1, 0, 0], [1, 1, 2, 2, 2], [0, 0, 2, 2, 2], [3, 0, 0, 0, 0]],
    )
    assert not paint_labels(np.zeros((0, 4, 5), bool), (4, 5)).any()


def test_mask_to_box() -> None:
    mask = np.zeros((10, 12), bool)
    assert mask_to_box(mask) is None
    mask[3, 7] = True
    np.testing.assert_array_equal(mask_to_box(mask), [7, 3, 7, 3])
    mask[5:9, 2:4] = True
    np.testing.assert_array_equal(mask_to_box(mask), [2, 3, 7, 8])


# --- 3D propagation rules ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["tight", "margin:0", "margin:3", "margin:12"])
def test_propagation_round_trips(text) -> None:
    assert str(Propagation.parse(text)) == text


@pytest.mark.parametrize("text", ["", "margin", "margin:-1", "margin:x", "wide", "spec"])
def test_propagation_rejects_unknown_rules(text) -> None:
    with pytest.raises(ValueError, match="expected 'tight' or 'margin:N'"):
        Propagation.parse(text)


def test_tight_rule_scales_the_mask_bbox_like_a_given_box() -> None:
    mask = np.zeros((540, 800), bool)
    mask[100:201, 300:451] = True  # bbox x 300..450, y 100..200 (inclusive)
    got = Propagation.parse("tight").next_box(mask, 1, 512, "bilinear")
    np.testing.assert_array_equal(got, transform_boxes(np.array([[300, 100, 450, 200]]), (540, 800), 512)[0])
    assert Propagation.parse("tight").next_box(np.zeros((5, 5), bool), 1, 512, "bilinear") is None


def test_margin_rule_widens_the_bbox_in_the_model_frame_and_clips() -> None:
    mask = np.zeros((512, 512), bool)  # 256 frame: factor 2, area resize of 2x2 blocks
    mask[0:40, 100:200] = True
    got = Propagation.parse("margin:3").next_box(mask, 1, 256, "area")
    np.testing.assert_array_equal(got, [50 - 3, 0, 99 + 3, 19 + 3])  # y clipped at 0
    mask[:, 400:] = True
    assert Propagation.parse("margin:3").next_box(mask, 1, 256, "area")[[2, 3]].tolist() == [256, 256]


def test_margin_rule_keeps_the_label_value_quirk() -> None:
    # One original pixel of a 4x4 block covers 1/16 of a 256-frame pixel: area averaging of the
    # label value rounds 1/16 and 7/16 to 0 but 9/16 (label 9) to 1, so only higher labels keep it.
    mask = np.zeros((1024, 1024), bool)
    mask[500, 500] = True
    rule = Propagation.parse("margin:3")
    assert rule.next_box(mask, 1, 256, "area") is None
    assert rule.next_box(mask, 7, 256, "area") is None
    np.testing.assert_array_equal(rule.next_box(mask, 9, 256, "area"), [125 - 3, 125 - 3, 125 + 3, 125 + 3])


# --- numpy against the original torch operations ------------------------------------------


def _torch_uint8_bilinear(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """What MedficientSAM's code does: F.interpolate on the uint8 NCHW tensor."""
    nchw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    return (
        F.interpolate(nchw, size=hw, mode="bilinear", align_corners=False, antialias=False)[0]
        .numpy()
        .transpose(1, 2, 0)
    )


def _torch_postprocess(logits: np.ndarray, resized_hw, original_hw, size: int) -> np.ndarray:
    """What the original code does: bilinear to SxS, crop, bilinear to (H, W), > 0, in torch."""
    up = F.interpolate(torch.from_numpy(logits), size=(size, size), mode="bilinear", align_corners=False)
    up = up[..., : resized_hw[0], : resized_hw[1]]
    return (F.interpolate(up, size=tuple(original_hw), mode="bilinear", align_corners=False)[:, 0] > 0).numpy()


ODD_SHAPES = [(1, 1), (1, 700), (700, 1), (2, 3), (257, 255), (511, 513), (1023, 17), (540, 800), (960, 999)]


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("channels", [1, 3])
def test_uint8_bilinear_equals_torch(shape, channels) -> None:
    image = _random((*shape, channels), seed=shape[0] * 7 + shape[1])
    for hw in (resized_shape(*shape, 512), (shape[0] + 5, max(1, shape[1] // 3))):
        if min(hw) >= 1:
            np.testing.assert_array_equal(bilinear_uint8(image, hw), _torch_uint8_bilinear(image, hw))


def _smooth_logits(n: int, seed: int) -> np.ndarray:
    """Logits crossing zero along curves, plus noise: masks with long, irregular boundaries."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    out = [
        np.sin(yy / (5 + k)) * 9 + np.cos(xx / (8 + k)) * 7 + rng.standard_normal((256, 256)) * 0.05 for k in range(n)
    ]
    return np.stack(out).astype(np.float32)[:, None]


@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize("size", [256, 512])
def test_postprocess_equals_torch_bit_for_bit(shape, size) -> None:
    resized = resized_shape(*shape, size)
    if min(resized) < 1:
        pytest.skip(f"{shape} resizes to nothing at {size}")
    logits = _smooth_logits(3, seed=sum(shape) + size)
    np.testing.assert_array_equal(
        postprocess(logits, resized, shape, size), _torch_postprocess(logits, resized, shape, size)
    )


def test_contract_equals_torch_on_every_bundled_case() -> None:
    from msam_export.data import SAMPLES, list_cases, load_case

    for path in list_cases(SAMPLES / "imgs"):
        case = load_case(path)
        image = case.image if not case.is_3d else case.image[int(case.boxes[0, 2] + case.boxes[0, 5]) // 2]
        hwc = image if image.ndim == 3 else image[:, :, None]
        for size in (512, 256):
            hw = resized_shape(*hwc.shape[:2], size)
            np.testing.assert_array_equal(bilinear_uint8(hwc, hw), _torch_uint8_bilinear(hwc, hw), err_msg=path.name)
            logits = _smooth_logits(2, seed=size)
            expected = _torch_postprocess(logits, hw, hwc.shape[:2], size)
            np.testing.assert_array_equal(postprocess(logits, hw, hwc.shape[:2], size), expected, err_msg=path.name)


def test_transform_points_scales_without_truncation():
    points = np.array([[[100.5, 33.3]]])
    np.testing.assert_allclose(transform_points(points, (400, 600), 256), points * 256 / 600, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        transform_points(np.zeros((2, 3)), (10, 10), 256)


def test_prompt_arrays_order_padding_and_mask_flags():
    boxes = np.array([[1.0, 2, 30, 40], [5, 6, 70, 80]])
    points = np.array([[[10.0, 11]], [[12, 13]]])
    labels = np.array([[1.0], [0.0]])
    with_box = prompt_arrays(boxes, points, labels)
    # points first, then the box's corners with labels 2 and 3; no padding point
    np.testing.assert_array_equal(with_box.point_coords[0], [[10, 11], [1, 2], [30, 40]])
    np.testing.assert_array_equal(with_box.point_labels, [[1, 2, 3], [0, 2, 3]])
    assert not with_box.has_mask_input.any() and not with_box.mask_input.any()
    clicks = prompt_arrays(points=points, labels=labels)
    # no box: one (0, 0) point of label -1, as SAM pads point-only prompts
    np.testing.assert_array_equal(clicks.point_labels, [[1, -1], [0, -1]])
    np.testing.assert_array_equal(clicks.point_coords[:, 1], 0)
    masks = np.ones((2, 1, 256, 256), dtype=np.float32)
    masks[1] = np.nan  # the second row has no previous mask
    flagged = prompt_arrays(boxes, masks=masks)
    np.testing.assert_array_equal(flagged.has_mask_input, [1, 0])
    assert flagged.mask_input[0].min() == 1 and not flagged.mask_input[1].any()
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in flagged.arrays())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs boxes or points"),
        ({"points": np.zeros((1, 2, 2))}, r"labels must be \(N, P\)"),
        ({"points": np.zeros((1, 2)), "labels": np.zeros(1)}, r"points must be \(N, P, 2\)"),
        ({"points": np.zeros((1, 1, 2)), "labels": np.full((1, 1), 5.0)}, "point labels must be"),
        ({"boxes": np.zeros((1, 4)), "masks": np.zeros((1, 1, 64, 64))}, "low-res logits"),
        ({"boxes": np.zeros((2, 4)), "points": np.zeros((1, 1, 2)), "labels": np.ones((1, 1))}, "N = 2"),
    ],
)
def test_prompt_arrays_names_bad_prompts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prompt_arrays(**kwargs)
