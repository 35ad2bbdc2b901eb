"""The inference contract shared by every backend: numpy in, numpy out.

This module is the single implementation of the pre- and postprocessing that the
original PyTorch code of MedficientSAM and LiteMedSAM performs around the networks
(see ``docs/PIPELINE.md``, sections "Preprocessing", "Boxes" and "Postprocessing").
The PyTorch, ONNX Runtime and OpenVINO backends all call it, so they see the same
tensors.

Two resize rules exist for the longest side:

``"bilinear"`` (MedficientSAM, S=512)
    ``F.interpolate`` on the uint8 NCHW tensor, bilinear, ``align_corners=False``,
    ``antialias=False``. Torch accepts uint8 for this and returns uint8: its native
    uint8 kernel interpolates in fixed point and rounds, so the result is *not*
    always ``round(float_bilinear)`` (it differs by 1 on some pixels). We therefore
    call torch itself on the uint8 tensor. The AVX2 and the default (no-SIMD) CPU
    kernels give identical results, as do NCHW and channels-last layouts.

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
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

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
    """Torch's uint8 bilinear resize (align_corners=False, no antialias).

    Args:
        image: uint8 (H, W, C).
        hw: output (h, w).

    Returns:
        uint8 (h, w, C), exactly what ``F.interpolate`` gives on the uint8 NCHW tensor.
    """
    nchw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    out = F.interpolate(nchw, size=hw, mode="bilinear", align_corners=False, antialias=False)
    if out.dtype != torch.uint8:  # pragma: no cover - guards a torch behaviour change
        raise RuntimeError(f"torch returned {out.dtype} for a uint8 bilinear resize")
    return np.ascontiguousarray(out[0].numpy().transpose(1, 2, 0))


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
        (``align_corners=False`` both times), all N boxes in one batch.
    """
    logits = np.asarray(low_res_logits, dtype=np.float32)
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(f"low_res_logits must be (N, 1, h, w), got {logits.shape}")
    h, w = resized_hw
    tensor = torch.from_numpy(np.ascontiguousarray(logits))
    up = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    up = up[..., :h, :w]
    full = F.interpolate(up, size=tuple(original_hw), mode="bilinear", align_corners=False)
    return (full[:, 0] > 0).numpy()


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
