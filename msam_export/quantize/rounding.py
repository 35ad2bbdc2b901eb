"""INT8 weight codes that minimize each layer's output error on the calibration slices (GPTQ).

NNCF rounds every weight to its nearest INT8 level. What matters is not the weight error
``W - Q`` but the output error ``(W - Q) X`` on the inputs ``X`` the layer really sees, and
those inputs are strongly correlated (a transformer's layer-norm outputs, a GELU's outputs).
GPTQ (Frantar et al., 2022, "Accurate Post-Training Quantization for Generative Pre-trained
Transformers") rounds the input columns of ``W`` one at a time and moves each column's
rounding error onto the columns not yet rounded, weighted by the inverse of
``H = X^T X``; the result minimizes ``||(W - Q) X||`` far better than nearest rounding.

Only the int8 codes change: NNCF's per-channel scales, the code range it used (7-bit for
targets that need the overflow fix), the graph and so the speed stay as they were, and
keeping an operation in float (``graph.keep_in_float``) still restores the FP32 weight exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .graph import is_weight, quantized_ops, weight_value

DAMPING = 0.01  # added to H's diagonal, as a share of its mean: keeps H invertible
BLOCK = 128  # columns rounded between two matrix updates of the rest
MAX_ROWS = 4096  # rows of X one slice adds to a layer's H (tokens or positions, evenly strided)
GRAM_SLICES = 64  # calibration slices GPTQ reads layer inputs from (spread over the file)


def gram_slices(count: int) -> np.ndarray:
    """Indices of the (at most ``GRAM_SLICES``) slices, of ``count``, whose layer inputs make H:
    evenly spread over the calibration file."""
    return np.unique(np.linspace(0, count - 1, min(GRAM_SLICES, count)).round().astype(int))


def strided_rows(rows: Any) -> Any:
    """At most ``MAX_ROWS`` of a slice's layer-input rows (numpy or torch), evenly strided."""
    return rows[:: -(-len(rows) // MAX_ROWS)]


@dataclass
class Rounding:
    """What weight rounding did: per layer, its output error relative to nearest rounding."""

    method: str = "gptq"
    slices: int = 0
    seconds: float = 0.0
    output_error: dict[str, float] = field(default_factory=dict)  # layer -> GPTQ / nearest
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why it kept nearest rounding

    def mean_output_error(self) -> float:
        return float(np.mean(list(self.output_error.values()))) if self.output_error else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "layers": len(self.output_error),
            "slices": self.slices,
            "seconds": round(self.seconds, 1),
            "mean_output_error_vs_nearest": round(self.mean_output_error(), 4),
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class _Weight:
    """A quantized weight: int8 ``codes`` (a Constant) times per-output-channel ``scale``."""

    codes: Any  # the Constant node
    scale: np.ndarray  # (out,)
    transposed: bool  # a MatMul weight stored (in, out)


def _quantized_weight(op: Any) -> _Weight | str:
    """The int8 weight of ``op`` (Constant -> Convert -> Multiply by a per-channel scale),
    or why it has none that GPTQ can round."""
    import openvino as ov

    multiply = op.input_value(1).get_node()
    if multiply.get_type_name() != "Multiply":
        return "weight is not a scaled int8 constant"
    convert, scale = (multiply.input_value(i).get_node() for i in (0, 1))
    if convert.get_type_name() != "Convert" or scale.get_type_name() != "Constant":
        return "weight is not a scaled int8 constant"
    codes = convert.input_value(0).get_node()
    if codes.get_type_name() != "Constant" or codes.get_element_type() != ov.Type.i8:
        return "weight has a zero point or is not int8"
    transposed = op.get_type_name() == "MatMul" and not op.get_attributes()["transpose_b"]
    shape = codes.get_data().shape
    out = shape[-1] if transposed else shape[0]
    values = scale.get_data().astype(np.float64)
    if values.size != out:
        return f"scale of {values.size} values for {out} output channels"
    return _Weight(codes, values.reshape(-1), transposed)


def _rounded_ops(model: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Quantized MatMul/Convolution operations with a weight GPTQ can round, and the others' reasons."""
    ops, skipped = {}, {}
    for name, op in quantized_ops(model).items():
        kind = op.get_type_name()
        if kind not in ("MatMul", "Convolution", "GroupConvolution") or not is_weight(op.input_value(1)):
            continue
        if kind == "GroupConvolution":
            skipped[name] = "grouped convolution"
        elif kind == "MatMul" and op.get_attributes()["transpose_a"]:
            skipped[name] = "transposed activation input"
        elif kind == "Convolution" and any(d != 1 for d in op.get_attributes()["dilations"]):
            skipped[name] = "dilated convolution"
        else:
            ops[name] = op
    return ops, skipped


def layer_rows(op: Any, value: np.ndarray) -> np.ndarray:
    """A layer's input as the rows its weight multiplies: (tokens, in) for a MatMul, the
    (positions, in_channels * kh * kw) patches of a Convolution, in the weight's own order."""
    if op.get_type_name() == "MatMul":
        return value.reshape(-1, value.shape[-1])
    attrs = op.get_attributes()
    kh, kw = op.input_value(1).get_partial_shape().to_shape()[2:]
    (sy, sx), (pt, pl), (pb, pr) = attrs["strides"], attrs["pads_begin"], attrs["pads_end"]
    padded = np.pad(value, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    height = (padded.shape[2] - kh) // sy + 1
    width = (padded.shape[3] - kw) // sx + 1
    taps = [
        padded[:, :, y : y + sy * (height - 1) + 1 : sy, x : x + sx * (width - 1) + 1 : sx]
        for y in range(kh)
        for x in range(kw)
    ]
    patches = np.stack(taps, axis=2)  # (B, C, kh*kw, H, W): column c*kh*kw + tap, as the weight
    batch, channels = value.shape[:2]
    return patches.reshape(batch, channels * kh * kw, height * width).transpose(0, 2, 1).reshape(-1, channels * kh * kw)


def input_grams(original: Any, names: list[str], images: np.ndarray) -> dict[str, np.ndarray]:
    """``H = X^T X`` (summed in float32, returned as float64) of each named operation's input in ``original``,
    accumulated over ``images`` (N, 3, S, S). Operations reading one tensor in the same way
    (a block's q, k and v) share one matrix; a slice contributes at most ``MAX_ROWS`` rows per
    layer, evenly strided over its tokens or positions."""
    import openvino as ov

    by_name = {op.get_friendly_name(): op for op in original.get_ops()}
    keys = {n: (*_source(by_name[n].input_value(0)), _patch_shape(by_name[n])) for n in names}
    readers = {key: by_name[n] for n, key in reversed(keys.items())}  # one operation per distinct input
    first = len(original.outputs)
    outputs = [*original.outputs, *(op.input_value(0) for op in readers.values())]
    compiled = ov.Core().compile_model(
        ov.Model(outputs, original.get_parameters(), "inputs"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    grams: dict[tuple, np.ndarray] = {}
    for i in range(len(images)):
        values = compiled(images[i : i + 1])
        for j, (key, op) in enumerate(readers.items()):
            rows = layer_rows(op, values[first + j])
            rows = strided_rows(rows).astype(np.float32)
            gram = rows.T @ rows
            grams[key] = grams[key] + gram if key in grams else gram
    return {n: grams[key].astype(np.float64) for n, key in keys.items()}


def _source(value: Any) -> tuple[str, int]:
    return value.get_node().get_friendly_name(), value.get_index()


def _patch_shape(op: Any) -> tuple:
    """What makes two readers of one tensor see the same rows: kernel, strides and pads."""
    if op.get_type_name() == "MatMul":
        return ()
    attrs = op.get_attributes()
    kernel = tuple(op.input_value(1).get_partial_shape().to_shape()[2:])
    return (kernel, *(tuple(attrs[k]) for k in ("strides", "pads_begin", "pads_end")))


def _inverse_factor(h: np.ndarray) -> np.ndarray:
    """The upper triangular ``U`` with ``inv(h) = U^T U``, from one Cholesky factorization:
    with ``h = R R^T``, ``R`` upper (the lower factor of ``h`` in reversed order, reversed back),
    ``U = inv(R)``, a triangular inverse."""
    from scipy.linalg import lapack

    flipped = np.linalg.cholesky(h[::-1, ::-1])
    upper, info = lapack.dtrtri(np.ascontiguousarray(flipped[::-1, ::-1]), lower=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"triangular inverse failed (info {info})")
    return upper


def gptq_codes(
    weight: np.ndarray, gram: np.ndarray, scale: np.ndarray, low: int, high: int, damping: float = DAMPING
) -> np.ndarray:
    """Integer codes ``Q`` in [low, high] for ``weight`` (out, in) with per-row ``scale`` (out,)
    that minimize ``||(weight - Q * scale) X||`` for inputs with ``gram = X^T X`` (in, in).

    Columns are rounded in order of decreasing input energy (GPTQ's act-order); a column no
    input reaches is rounded to nearest. With a diagonal ``gram`` this is nearest rounding.
    """
    w = weight.astype(np.float64).copy()
    h = gram.astype(np.float64).copy()
    n = w.shape[1]
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    order = np.argsort(-np.diag(h), kind="stable")
    w, h = w[:, order], h[np.ix_(order, order)]
    h[np.diag_indices(n)] += damping * float(np.mean(np.diag(h)))
    upper = _inverse_factor(h)
    codes = np.empty_like(w)
    step = scale.astype(np.float64)
    for start in range(0, n, BLOCK):  # columns in blocks: the updates past a block are one matmul
        end = min(start + BLOCK, n)
        errors = np.empty((w.shape[0], end - start))
        for i in range(start, end):
            codes[:, i] = np.clip(np.round(w[:, i] / step), low, high)
            errors[:, i - start] = (w[:, i] - codes[:, i] * step) / upper[i, i]
            w[:, i + 1 : end] -= np.outer(errors[:, i - start], upper[i, i + 1 : end])
        w[:, end:] -= errors @ upper[start:end, end:]
    return codes[:, np.argsort(order)]


def output_error(weight: np.ndarray, codes: np.ndarray, scale: np.ndarray, gram: np.ndarray) -> float:
    """``||(weight - codes * scale) X||^2`` from ``gram = X^T X``."""
    diff = weight.astype(np.float64) - codes.astype(np.float64) * scale[:, None]
    return float(np.sum((diff @ gram) * diff))


def _as_rows(weight: _Weight, values: np.ndarray) -> np.ndarray:
    """A weight's values as (out, in) rows, in the order of ``layer_rows``' columns."""
    shape = weight.codes.get_data().shape
    values = values.reshape(shape)
    return values.T if weight.transposed else values.reshape(shape[0], -1)


def _round_one(weight: _Weight, fp32: np.ndarray, gram: np.ndarray, damping: float) -> float:
    """Puts GPTQ's codes in place of ``weight``'s when they lower the output error; returns
    the output error relative to nearest rounding (at most 1)."""
    import openvino as ov

    nearest = weight.codes.get_data()
    rows = _as_rows(weight, fp32)
    # the code range NNCF used: full 8-bit, or 7-bit under the overflow fix
    codes = gptq_codes(rows, gram, weight.scale, int(nearest.min()), int(nearest.max()), damping)
    before = output_error(rows, _as_rows(weight, nearest), weight.scale, gram)
    ratio = output_error(rows, codes, weight.scale, gram) / max(before, 1e-30)
    if ratio >= 1.0:  # never worse than nearest rounding
        return 1.0
    stored = codes.T if weight.transposed else codes.reshape(nearest.shape)
    replacement = ov.op.Constant(np.ascontiguousarray(stored.astype(np.int8)))
    for target in list(weight.codes.output(0).get_target_inputs()):
        target.replace_source_output(replacement.output(0))
    return ratio


def round_weights(quantized: Any, original: Any, images: np.ndarray, damping: float = DAMPING) -> Rounding:
    """Replaces the int8 codes of every quantized MatMul/Convolution weight of ``quantized``
    (in place) by GPTQ's, from the FP32 weights and layer inputs of ``original`` on ``images``."""
    start = time.perf_counter()
    ops, skipped = _rounded_ops(quantized)
    weights: dict[str, _Weight] = {}
    for name, op in ops.items():
        found = _quantized_weight(op)
        if isinstance(found, str):
            skipped[name] = found
        else:
            weights[name] = found
    report = Rounding(slices=len(images), skipped=skipped)
    if not weights:
        return report
    grams = input_grams(original, list(weights), images)
    by_name = {op.get_friendly_name(): op for op in original.get_ops()}
    for name, found in weights.items():
        fp32 = np.asarray(weight_value(by_name[name].input_value(1)), dtype=np.float64)
        report.output_error[name] = _round_one(found, fp32, grams[name], damping)
    quantized.validate_nodes_and_infer_types()
    report.seconds = time.perf_counter() - start
    return report
