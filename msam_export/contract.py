"""The inference contract shared by every backend: numpy in, numpy out.

This module is the single implementation of the pre- and postprocessing that the
original PyTorch code of MedficientSAM and LiteMedSAM performs around the networks
(see ``docs/PIPELINE.md``, sections "Preprocessing", "Boxes", "Postprocessing" and
"3D cases"). The PyTorch, ONNX Runtime and OpenVINO backends all call it, so they see
the same tensors. It needs numpy only, and reproduces the original torch and OpenCV
operations bit for bit.

Two resize rules exist for the longest side:

``"bilinear"`` (MedficientSAM, S=512)
    ``F.interpolate`` on the uint8 NCHW tensor, bilinear, ``align_corners=False``,
    ``antialias=False``. Torch accepts uint8 for this and returns uint8: its native
    uint8 kernel interpolates in fixed point and rounds, so the result is *not*
    always ``round(float_bilinear)`` (it differs by 1 on some pixels). That kernel is
    re-implemented here in numpy (:func:`bilinear_uint8`), bit for bit.

``"area"`` (LiteMedSAM, S=256)
    ``cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)`` on the uint8 HWC image,
    re-implemented here in numpy without OpenCV, following OpenCV's
    ``imgproc/src/resize.cpp`` operation by operation:

    * both scales integer (``src/dst``): block mean ("area fast"). A 2x2 block rounds
      half up, ``(sum + 2) >> 2``; any other block size computes
      ``float32(sum) * float32(1/area)`` and rounds half to even (``cvRound``).
    * both scales >= 1 otherwise: area-weighted average with fractional overlaps
      (``computeResizeAreaTab``); float32 accumulation, horizontal then vertical, in
      OpenCV's order, rounded half to even.
    * any scale < 1 (upscaling): OpenCV falls back to its fixed-point INTER_LINEAR
      kernel with "area" coefficients: ``sx = floor(dx*scale)``,
      ``fx = (dx+1) - (sx+1)/scale``, ``fx = 0 if fx <= 0 else fx - floor(fx)``;
      weights ``round((1-fx)*2048)`` and ``round(fx*2048)``; the same rule on rows;
      then OpenCV's 8-bit vertical pass
      ``((b0*(S0>>4))>>16) + ((b1*(S1>>4))>>16) + 2) >> 2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

RESIZE_RULES = ("bilinear", "area")
_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS
_DBL_EPSILON = float(np.finfo(np.float64).eps)


def resized_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """Shape (h', w') of an (h, w) image whose longest side is resized to ``size``.

    Each side becomes ``int(dim * size / max(h, w) + 0.5)``.
    """
    longest = max(h, w)
    return int(h * size / longest + 0.5), int(w * size / longest + 0.5)


def preprocess(image: np.ndarray, size: int, resize: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Turn a uint8 image into the encoder input.

    Args:
        image: uint8 array of shape (H, W), (H, W, 1) or (H, W, 3).
        size: S, the side of the square model input (512 or 256).
        resize: ``"bilinear"`` (MedficientSAM) or ``"area"`` (LiteMedSAM).

    Returns:
        ``(tensor, (h, w))``: float32 (1, 3, S, S) NCHW, min-max scaled to [0, 1]
        over the resized image and zero-padded bottom/right; (h, w) is the size of
        the resized image before padding.
    """
    hwc = _to_hwc(image)
    if resize not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {resize!r}; expected one of {RESIZE_RULES}")
    h, w = resized_shape(hwc.shape[0], hwc.shape[1], size)
    if h < 1 or w < 1:
        raise ValueError(f"image of shape {image.shape} resizes to an empty ({h}, {w})")
    # A grey image is resized as one channel and broadcast to three afterwards: both
    # resize rules treat channels independently, so this equals resizing the repeated
    # 3-channel image (checked against torch and OpenCV) at a third of the cost.
    resized = _resize(hwc, (h, w), size, resize)
    out = np.zeros((1, 3, size, size), dtype=np.float32)
    out[0, :, :h, :w] = _min_max(resized).transpose(2, 0, 1)
    return out, (h, w)


def _to_hwc(image: np.ndarray) -> np.ndarray:
    """Validate a uint8 (H,W), (H,W,1) or (H,W,3) image; return it as (H,W,C), C 1 or 3."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"image must be a uint8 numpy array, got {dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"image must be (H,W), (H,W,1) or (H,W,3), got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: {image.shape}")
    return image


def _resize(image: np.ndarray, hw: tuple[int, int], size: int, rule: str) -> np.ndarray:
    """Resize a uint8 (H,W,C) image to hw with the given rule; uint8 (h,w,C)."""
    if max(image.shape[0], image.shape[1]) == size:
        return image
    if rule == "bilinear":
        return bilinear_uint8(image, hw)
    return area_resize(image, hw)


def _min_max(image: np.ndarray) -> np.ndarray:
    """``(x - min) / clip(max - min, 1e-8, None)`` over the whole image, float32."""
    lo = np.float32(image.min())
    span = np.float32(max(float(image.max()) - float(lo), 1e-8))
    return (image.astype(np.float32) - lo) / span


def bilinear_uint8(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Torch's uint8 bilinear resize (``F.interpolate`` on the uint8 NCHW tensor,
    align_corners=False, no antialias), in numpy.

    Torch resizes uint8 separably in fixed point: per axis, source taps and float64
    weights normalised to sum 1, turned into integers with the most bits that keep the
    largest weight below 2**15; each output is ``(sum(x * w) + 2**(p-1)) >> p``, clipped
    to [0, 255]; the horizontal pass first, rounded to uint8, then the vertical pass. An
    axis whose size does not change is copied.

    Args:
        image: uint8 (H, W, C).
        hw: output (h, w).

    Returns:
        uint8 (h, w, C), bit-identical to torch's result.
    """
    out = np.asarray(image, dtype=np.uint8)
    if out.shape[1] != hw[1]:
        out = _resample_uint8(out, hw[1], axis=1)
    if out.shape[0] != hw[0]:
        out = _resample_uint8(out, hw[0], axis=0)
    return np.ascontiguousarray(out)


@lru_cache(maxsize=64)
def _uint8_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Source indices (dst, 3), integer weights (dst, 3) and their precision (bits) of one axis,
    as torch's ``_compute_index_ranges_int16_weights`` computes them for bilinear."""
    scale = src / dst
    center = scale * (np.arange(dst, dtype=np.float64) + 0.5)
    first = np.maximum(np.floor(center - 0.5), 0)
    count = np.minimum(np.floor(center + 1.5), src) - first
    taps = np.arange(3, dtype=np.float64)
    position = first[:, None] + taps[None, :]
    weight = np.clip(1.0 - np.abs(position - center[:, None] + 0.5), 0.0, None)
    weight = np.where(taps[None, :] < count[:, None], weight, 0.0)
    total = (weight[:, 0:1] + weight[:, 1:2]) + weight[:, 2:3]  # torch's summation order
    weight = weight / total
    largest = float(weight.max())
    precision = next((p for p in range(22) if int(0.5 + largest * (1 << (p + 1))) >= 1 << 15), 22)
    fixed = np.floor(0.5 + weight * float(1 << precision)).astype(np.int64)
    index = np.minimum(position, src - 1).astype(np.intp)
    return index, fixed, precision


def _resample_uint8(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """One fixed-point pass of :func:`bilinear_uint8` along ``axis`` (0: rows, 1: columns)."""
    index, weight, precision = _uint8_taps(image.shape[axis], size)
    shape = [1, 1, 1]
    shape[axis] = size
    total = np.full(1, 1 << (precision - 1), dtype=np.int64)
    for tap in range(3):
        gathered = np.take(image, index[:, tap], axis=axis).astype(np.int64)
        total = total + gathered * weight[:, tap].reshape(shape)
    return np.clip(total >> precision, 0, 255).astype(np.uint8)


def area_resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """OpenCV ``cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)`` in numpy.

    Args:
        image: uint8 (H, W, C).
        hw: output (h, w).

    Returns:
        uint8 (h, w, C), bit-identical to OpenCV's result (checked against
        opencv-python-headless 4.14 and 5.0 on >1000 random shapes, both directions).
    """
    src_h, src_w = image.shape[:2]
    out_h, out_w = hw
    inv_x, inv_y = out_w / src_w, out_h / src_h
    scale_x, scale_y = 1.0 / inv_x, 1.0 / inv_y
    if scale_x >= 1 and scale_y >= 1:
        ix, iy = int(round(scale_x)), int(round(scale_y))
        fast = abs(scale_x - ix) < _DBL_EPSILON and abs(scale_y - iy) < _DBL_EPSILON
        if fast:
            return _area_fast(image, hw, ix, iy)
        return _area_general(image, hw, scale_x, scale_y)
    return _area_linear(image, hw, (scale_x, inv_x), (scale_y, inv_y))


def _area_fast(image: np.ndarray, hw: tuple[int, int], ix: int, iy: int) -> np.ndarray:
    """OpenCV's integer-factor INTER_AREA: the mean of each iy x ix block."""
    out_h, out_w = hw
    blocks = image[: out_h * iy, : out_w * ix].reshape(out_h, iy, out_w, ix, -1)
    sums = blocks.sum(axis=(1, 3), dtype=np.int32)
    if ix == 2 and iy == 2 and image.shape[2] in (1, 3, 4):
        return ((sums + 2) >> 2).astype(np.uint8)
    mean = sums.astype(np.float32) * np.float32(1.0 / (ix * iy))
    return _saturate_u8(mean)


def _saturate_u8(values: np.ndarray) -> np.ndarray:
    """OpenCV's ``saturate_cast<uchar>(float)``: round half to even, clip to [0, 255]."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


@lru_cache(maxsize=64)
def _area_tab(src: int, dst: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's ``computeResizeAreaTab`` as padded (terms, dst) index/weight tables.

    Column ``d`` lists, in OpenCV's order, the source indices and float32 weights
    that make output ``d``; unused slots have weight 0 (adding 0.0 changes nothing).
    """
    terms: list[list[tuple[int, float]]] = []
    for d in range(dst):
        terms.append(_area_terms(d, src, scale))
    depth = max(len(t) for t in terms)
    index = np.zeros((depth, dst), dtype=np.intp)
    weight = np.zeros((depth, dst), dtype=np.float32)
    for d, column in enumerate(terms):
        for j, (s, a) in enumerate(column):
            index[j, d], weight[j, d] = s, a
    index.flags.writeable = weight.flags.writeable = False
    return index, weight


def _area_terms(d: int, src: int, scale: float) -> list[tuple[int, float]]:
    """Source (index, weight) pairs of output ``d``, as in ``computeResizeAreaTab``."""
    fs1 = d * scale
    fs2 = fs1 + scale
    cell = min(scale, src - fs1)
    s2 = min(math.floor(fs2), src - 1)
    s1 = min(math.ceil(fs1), s2)
    terms = []
    if s1 - fs1 > 1e-3:
        terms.append((s1 - 1, float(np.float32((s1 - fs1) / cell))))
    terms.extend((s, float(np.float32(1.0 / cell))) for s in range(s1, s2))
    if fs2 - s2 > 1e-3:
        terms.append((s2, float(np.float32(min(min(fs2 - s2, 1.0), cell) / cell))))
    return terms


def _area_general(image: np.ndarray, hw: tuple[int, int], scale_x: float, scale_y: float) -> np.ndarray:
    """OpenCV's non-integer INTER_AREA downscale (``ResizeArea_Invoker``)."""
    src_h, src_w = image.shape[:2]
    x_index, x_weight = _area_tab(src_w, hw[1], scale_x)
    y_index, y_weight = _area_tab(src_h, hw[0], scale_y)
    # Columns first (gathering along the leading axis is fast), then rows.
    columns = np.ascontiguousarray(image.transpose(1, 0, 2), dtype=np.float32)
    acc = np.zeros((hw[1], src_h, image.shape[2]), dtype=np.float32)
    for index, weight in zip(x_index, x_weight, strict=True):
        acc += columns[index] * weight[:, None, None]
    rows = np.ascontiguousarray(acc.transpose(1, 0, 2))
    out = np.zeros((hw[0], hw[1], image.shape[2]), dtype=np.float32)
    for index, weight in zip(y_index, y_weight, strict=True):
        out += weight[:, None, None] * rows[index]
    return _saturate_u8(out)


def _linear_area_coeffs(
    src: int, dst: int, scales: tuple[float, float], columns: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_AREA-as-linear coefficients along one axis.

    Returns source indices i0, i1 (dst,) and fixed-point weights (dst, 2), each
    ``round(w * 2048)`` of the float32 weights (1 - f, f). OpenCV zeroes the fraction
    at the last column (``columns``) but not at the last row, whose second source row
    is merely clipped.
    """
    scale, inv = scales
    d = np.arange(dst)
    s = np.floor(d * scale).astype(np.int64)
    f = ((d + 1) - (s + 1) * inv).astype(np.float32)
    f = np.where(f <= 0, np.float32(0), f - np.floor(f)).astype(np.float32)
    if columns:
        f[s >= src - 1] = 0
    s = np.minimum(s, src - 1)
    w0 = np.rint((np.float32(1) - f) * np.float32(_COEF_SCALE)).astype(np.int64)
    w1 = np.rint(f * np.float32(_COEF_SCALE)).astype(np.int64)
    return s, np.minimum(s + 1, src - 1), np.stack([w0, w1], axis=1)


def _area_linear(
    image: np.ndarray,
    hw: tuple[int, int],
    x_scales: tuple[float, float],
    y_scales: tuple[float, float],
) -> np.ndarray:
    """OpenCV's INTER_AREA when upscaling: fixed-point linear with area coefficients."""
    src_h, src_w = image.shape[:2]
    x0, x1, wx = _linear_area_coeffs(src_w, hw[1], x_scales, columns=True)
    y0, y1, wy = _linear_area_coeffs(src_h, hw[0], y_scales, columns=False)
    pixels = image.astype(np.int64)
    rows = pixels[:, x0, :] * wx[None, :, 0, None] + pixels[:, x1, :] * wx[None, :, 1, None]
    top = (wy[:, 0, None, None] * (rows[y0] >> 4)) >> 16
    bottom = (wy[:, 1, None, None] * (rows[y1] >> 4)) >> 16
    return np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)


def transform_boxes(boxes: np.ndarray, original_hw: tuple[int, int], size: int) -> np.ndarray:
    """Map XYXY boxes from original pixels to the S frame, as the PyTorch path does.

    Args:
        boxes: (N, 4) ``[x_min, y_min, x_max, y_max]`` in original pixels.
        original_hw: (H, W) of the original image.
        size: S.

    Returns:
        float32 (N, 4): ``trunc(box * (size / max(H, W)))`` (ratio computed first, in
        float64, like ``int(box[i] * ratio)``). The +0.5 and /S happen in the graph.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4), got {arr.shape}")
    ratio = size / max(original_hw)
    return np.trunc(arr * ratio).astype(np.float32)


def transform_points(points: np.ndarray, original_hw: tuple[int, int], size: int) -> np.ndarray:
    """Map XY points (..., 2) from original pixels to the S frame: ``point * (size / max(H, W))``,
    not truncated (SAM's ``apply_coords``). float32. The +0.5 and /S happen in the graph."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != 2:
        raise ValueError(f"points must be (..., 2) XY, got {arr.shape}")
    return (arr * (size / max(original_hw))).astype(np.float32)


POINT_LABELS = (-1.0, 0.0, 1.0, 2.0, 3.0)  # padding, background, foreground, box corners


@dataclass(frozen=True)
class PromptArrays:
    """The full decoder interface's inputs for N prompts (see ``artifact``): float32
    ``point_coords`` (N,P,2) S frame, ``point_labels`` (N,P), ``mask_input`` (N,1,256,256),
    ``has_mask_input`` (N,)."""

    point_coords: np.ndarray
    point_labels: np.ndarray
    mask_input: np.ndarray
    has_mask_input: np.ndarray

    def __len__(self) -> int:
        return len(self.point_labels)

    def rows(self, start: int, stop: int) -> PromptArrays:
        return PromptArrays(*(a[start:stop] for a in self.arrays()))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.point_coords, self.point_labels, self.mask_input, self.has_mask_input


def prompt_arrays(
    boxes: np.ndarray | None = None,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    low_res: int = 256,
) -> PromptArrays:
    """S-frame prompts -> the full interface's inputs, as SAM's predictor builds them.

    Args:
        boxes: (N, 4) S-frame XYXY boxes, or None.
        points: (N, P, 2) S-frame XY clicks, or None; ``labels`` (N, P): 1 foreground,
            0 background (-1 pads a row that has fewer clicks).
        masks: (N, 1, 256, 256) or (N, 256, 256) low-res logits of a previous call, or None.
            A row of NaN is "no mask" for that row.

    Each row is its points, then its box's two corners (labels 2 and 3); a row with no box
    ends with one (0, 0) point of label -1, as SAM pads point-only prompts. Rows without a
    mask get zeros and ``has_mask_input`` 0.
    """
    given = [a for a in (boxes, points, masks) if a is not None]
    if boxes is None and points is None:
        raise ValueError("a prompt needs boxes or points")
    n = len(given[0])
    coords, codes = [], []
    if points is not None:
        points = np.asarray(points, dtype=np.float32)
        codes_in = np.asarray(labels, dtype=np.float32) if labels is not None else None
        if points.ndim != 3 or points.shape[2] != 2 or len(points) != n:
            raise ValueError(f"points must be (N, P, 2) with N = {n}, got {points.shape}")
        if codes_in is None or codes_in.shape != points.shape[:2]:
            found = None if codes_in is None else codes_in.shape
            raise ValueError(f"labels must be (N, P) = {points.shape[:2]}, got {found}")
        if not np.isin(codes_in, POINT_LABELS).all():
            raise ValueError("point labels must be 1 (foreground), 0 (background), 2/3 (box corners) or -1 (padding)")
        coords.append(points)
        codes.append(codes_in)
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.shape != (n, 4):
            raise ValueError(f"boxes must be (N, 4) with N = {n}, got {boxes.shape}")
        coords.append(boxes.reshape(n, 2, 2))
        codes.append(np.tile(np.array([2.0, 3.0], dtype=np.float32), (n, 1)))
    else:
        coords.append(np.zeros((n, 1, 2), dtype=np.float32))
        codes.append(np.full((n, 1), -1.0, dtype=np.float32))
    mask_input = np.zeros((n, 1, low_res, low_res), dtype=np.float32)
    has_mask = np.zeros(n, dtype=np.float32)
    if masks is not None:
        masks = np.asarray(masks, dtype=np.float32).reshape(-1, 1, *np.shape(masks)[-2:])
        if masks.shape != mask_input.shape:
            raise ValueError(f"masks must be (N, 1, {low_res}, {low_res}) low-res logits, got {np.shape(masks)}")
        has_mask = (~np.isnan(masks).any(axis=(1, 2, 3))).astype(np.float32)
        mask_input = np.where(np.isnan(masks), np.float32(0), masks)
    return PromptArrays(
        np.ascontiguousarray(np.concatenate(coords, axis=1)), np.ascontiguousarray(np.concatenate(codes, axis=1)),
        mask_input, has_mask,
    )  # fmt: skip


def postprocess(
    low_res_logits: np.ndarray,
    resized_hw: tuple[int, int],
    original_hw: tuple[int, int],
    size: int,
) -> np.ndarray:
    """Turn low-resolution logits into masks at the original size.

    Args:
        low_res_logits: float32 (N, 1, 256, 256).
        resized_hw: (h, w) returned by :func:`preprocess`.
        original_hw: (H, W) of the original image.
        size: S.

    Returns:
        bool (N, H, W): bilinear to SxS, crop to [:h, :w], bilinear to (H, W), ``> 0``
        (``align_corners=False`` both times), as torch's ``F.interpolate`` gives them.

    The upsampling runs as two matrix products per step (fast, but rounded differently
    from torch); a pixel whose value is too close to 0 for that rounding to be ignored is
    recomputed exactly as torch computes it (:func:`bilinear_points`), so the masks equal
    torch's bit for bit.
    """
    logits = np.asarray(low_res_logits, dtype=np.float32)
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(f"low_res_logits must be (N, 1, h, w), got {logits.shape}")
    low = logits[:, 0]
    h, w = resized_hw
    frame = low if low.shape[1:] == (size, size) else bilinear_fast(low, (size, size))
    full = bilinear_fast(frame[:, :h, :w], tuple(original_hw))
    masks = full > 0
    # each fast or exact pass is within a few float32 ulps of the largest input magnitude
    bound = _ROUNDING_ULPS * np.finfo(np.float32).eps * np.abs(low).max(axis=(1, 2))
    n, ys, xs = np.nonzero(np.abs(full) < bound[:, None, None])
    if n.size:
        masks[n, ys, xs] = _exact_logits(low, n, ys, xs, (h, w), tuple(original_hw), size) > 0
    return masks


_ROUNDING_ULPS = 64


@lru_cache(maxsize=64)
def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, w0, w1) of torch's float bilinear along one axis (align_corners=False).

    The source coordinate ``scale * (d + 0.5) - 0.5`` is rounded once, as torch's compiled
    kernel computes it (a fused multiply-add), then clamped at 0."""
    if src == dst:
        same = np.arange(dst)
        return same, same, np.ones(dst, np.float32), np.zeros(dst, np.float32)
    scale = np.float32(src) / np.float32(dst)
    real = (np.float64(scale) * (np.arange(dst) + 0.5) - 0.5).astype(np.float32)
    real = np.maximum(real, np.float32(0))
    i0 = np.minimum(np.floor(real).astype(np.intp), src - 1)
    w1 = np.clip(real - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = i0 + (i0 < src - 1)
    for array in (i0, i1, w1):
        array.flags.writeable = False
    return i0, i1, (np.float32(1) - w1).astype(np.float32), w1


@lru_cache(maxsize=64)
def _linear_matrix(src: int, dst: int) -> np.ndarray:
    """float32 (src, dst): column d holds the two weights of output d at its source rows."""
    i0, i1, w0, w1 = _linear_taps(src, dst)
    matrix = np.zeros((src, dst), np.float32)
    columns = np.arange(dst)
    matrix[i0, columns] += w0
    matrix[i1, columns] += w1
    matrix.flags.writeable = False
    return matrix


def bilinear_fast(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """float32 (N, h, w) -> (N, H, W) bilinear (align_corners=False) by two matrix products;
    within a few ulps of torch's values, not bit-identical (see :func:`bilinear_points`)."""
    rows = x if x.shape[2] == hw[1] else x @ _linear_matrix(x.shape[2], hw[1])
    return rows if x.shape[1] == hw[0] else np.matmul(_linear_matrix(x.shape[1], hw[0]).T, rows)


def _lerp(a: np.ndarray, w0: np.ndarray, b: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """Torch's two-tap sum: ``fma(a, w0, round(b * w1))`` in float32 (exact via float64)."""
    return (a.astype(np.float64) * w0 + (b * w1).astype(np.float32)).astype(np.float32)


def bilinear_points(
    value: Callable[[np.ndarray, np.ndarray], np.ndarray],
    src_hw: tuple[int, int],
    dst_hw: tuple[int, int],
    ys: np.ndarray,
    xs: np.ndarray,
) -> np.ndarray:
    """Torch's float bilinear output (align_corners=False) at output pixels (ys, xs), exactly.

    ``value(rows, cols)`` gives the source values at those indices (float32)."""
    y0, y1, wy0, wy1 = (t[ys] for t in _linear_taps(src_hw[0], dst_hw[0]))
    x0, x1, wx0, wx1 = (t[xs] for t in _linear_taps(src_hw[1], dst_hw[1]))
    top = _lerp(value(y0, x0), wx0, value(y0, x1), wx1)
    bottom = _lerp(value(y1, x0), wx0, value(y1, x1), wx1)
    return _lerp(top, wy0, bottom, wy1)


def _exact_logits(
    low: np.ndarray,
    n: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    resized_hw: tuple[int, int],
    original_hw: tuple[int, int],
    size: int,
) -> np.ndarray:
    """The full-resolution logits of boxes ``n`` at (ys, xs), exactly as torch computes them."""

    def in_frame(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        if low.shape[1:] == (size, size):
            return low[n, rows, cols]
        return bilinear_points(lambda r, c: low[n, r, c], low.shape[1:], (size, size), rows, cols)

    return bilinear_points(in_frame, resized_hw, original_hw, ys, xs)


def paint_labels(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Paint bool masks (N, H, W) into a uint16 (H, W) label map.

    Mask i writes label i + 1; later masks overwrite earlier ones where they overlap.
    """
    segs = np.zeros(tuple(shape), dtype=np.uint16)
    for i, mask in enumerate(masks):
        if mask.shape != segs.shape:
            raise ValueError(f"mask {i} has shape {mask.shape}, expected {segs.shape}")
        segs[mask.astype(bool)] = i + 1
    return segs


def mask_to_box(mask: np.ndarray) -> np.ndarray | None:
    """Tight bounding box of a 2D bool mask, or None if the mask is empty.

    Returns:
        int64 (4,) ``[x_min, y_min, x_max, y_max]``: inclusive pixel indices.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D, got {mask.shape}")
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return np.array([xs[0], ys[0], xs[-1], ys[-1]], dtype=np.int64)


@dataclass(frozen=True)
class Propagation:
    """How a 3D box prompts the slices beyond its middle one (see ``docs/PIPELINE.md``).

    Every slice but the middle one is prompted with a box taken from the mask just found
    on its neighbour towards the middle, or with the given box when that mask is empty.

    ``margin`` None ("tight", MedficientSAM's rule): the tight bounding box of the mask in
    original pixels, then scaled to the S frame like a given box.

    ``margin`` N ("margin:N", LiteMedSAM's official rule with N=3): the mask, holding its
    box's label value (1 for the first box, 2 for the second, ...; at most 255), is
    resized to the S frame with the model's own resize rule and zero-padded; the bounding
    box of its nonzero pixels there, widened by N on each side and clipped to [0, S], is
    the prompt. The label value matters: after area averaging and uint8 rounding a partly
    covered pixel stays nonzero more easily for a higher label, as in the original script.
    """

    margin: int | None = None

    @classmethod
    def parse(cls, text: str) -> Propagation:
        """``"tight"`` or ``"margin:N"`` (N >= 0) -> a rule; ValueError otherwise."""
        if text == "tight":
            return cls(None)
        name, _, value = text.partition(":")
        if name == "margin" and value.isdigit():
            return cls(int(value))
        raise ValueError(f"unknown propagation rule {text!r}; expected 'tight' or 'margin:N' (e.g. margin:3)")

    def __str__(self) -> str:
        return "tight" if self.margin is None else f"margin:{self.margin}"

    def next_box(self, mask: np.ndarray, label: int, size: int, resize: str) -> np.ndarray | None:
        """The S-frame prompt (float32 (4,)) that a neighbour's bool (H, W) ``mask`` of box
        ``label`` (1-based) gives, or None when the mask gives no box (empty)."""
        if self.margin is None:
            box = mask_to_box(mask)
            return None if box is None else transform_boxes(box[None], mask.shape, size)[0]
        valued = np.where(np.asarray(mask, dtype=bool), np.uint8(min(label, 255)), np.uint8(0))
        resized = _resize(valued[:, :, None], resized_shape(*mask.shape, size), size, resize)[:, :, 0]
        box = mask_to_box(resized > 0)
        if box is None:
            return None
        lo = np.maximum(box[:2] - self.margin, 0)
        hi = np.minimum(box[2:] + self.margin, size)
        return np.concatenate([lo, hi]).astype(np.float32)
