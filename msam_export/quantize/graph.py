"""Reading and editing NNCF-quantized OpenVINO graphs.

A quantized operation (Convolution, GroupConvolution, MatMul, attention) has
FakeQuantize nodes on its activation inputs and an int8 weight constant with a
dequantization subgraph (Convert, Multiply) on its weight input. NNCF places an
activation FakeQuantize at the output of the operation that produces the tensor, so
shape-only operations (a transformer's window partition and head split: Reshape,
Transpose) can lie between it and the operation it quantizes, and one FakeQuantize
can serve several operations (a block's q, k and v projections). Keeping an operation
in float means bypassing the FakeQuantize nodes that feed it and putting back the
FP32 weight constant of the original model. Without bias correction and SmoothQuant (both off
in our recipe, see ``openvino.py``) that restores the original operation exactly.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

QUANTIZABLE = ("Convolution", "GroupConvolution", "MatMul")
SHAPE_ONLY = ("Reshape", "Transpose", "Squeeze", "Unsqueeze")  # move values, never change them


def fake_quantizers(model: Any) -> list[Any]:
    return [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]


def _consumers(output: Any) -> list[Any]:
    """Operations that read ``output``, looking through shape-only operations."""
    out = []
    for target in output.get_target_inputs():
        node = target.get_node()
        out += _consumers(node.output(0)) if node.get_type_name() in SHAPE_ONLY else [node]
    return out


def feeding_quantizers(node: Any) -> list[Any]:
    """The activation FakeQuantize nodes on ``node``'s inputs, looking through shape-only operations."""
    out = []
    for value in node.input_values():
        source = value.get_node()
        while source.get_type_name() in SHAPE_ONLY:
            source = source.input_value(0).get_node()
        if source.get_type_name() == "FakeQuantize":
            out.append(source)
    return out


def quantized_ops(model: Any) -> dict[str, Any]:
    """Name -> operation, for operations with an activation FakeQuantize on an input."""
    ops = {}
    for fq in fake_quantizers(model):
        for node in _consumers(fq.output(0)):
            if node.get_type_name() in QUANTIZABLE or node.get_type_name() == "ScaledDotProductAttention":
                ops[node.get_friendly_name()] = node
    return ops


def module_path(node: Any, depth: int = 3, limit: int = 40) -> str:
    """The source module an operation belongs to, from the ONNX names ("/layers.1/blocks.0/attn/...").

    Operations the exporter named generically ("Gemm_97") take the path of the
    nearest named operation upstream. ``depth`` path components are kept
    ("layers.1/blocks.0/attn").
    """
    frontier, seen = [node], set()
    while frontier and len(seen) < limit:
        current = frontier.pop(0)
        name = current.get_friendly_name()
        if name.startswith("/") and name.count("/") >= 2:
            parts = name.strip("/").split("/")[:-1]
            return "/".join(parts[:depth])
        seen.add(id(current))
        frontier += [v.get_node() for v in current.input_values() if id(v.get_node()) not in seen]
    return "other"


def groups(model: Any, depth: int = 2) -> dict[str, list[str]]:
    """Quantized operations grouped by module path (``depth`` components, e.g. "layers.1/blocks.0")."""
    out: dict[str, list[str]] = defaultdict(list)
    for name, node in quantized_ops(model).items():
        out[module_path(node, depth)].append(name)
    return dict(sorted(out.items()))


WEIGHT_PATH = ("Constant", "Convert", "Subtract", "Multiply", *SHAPE_ONLY)  # a dequantized weight


def is_weight(value: Any) -> bool:
    """Whether ``value`` is a (dequantized) weight: computed from constants by a dequantization subgraph."""
    frontier = [value.get_node()]
    while frontier:
        node = frontier.pop()
        if node.get_type_name() not in WEIGHT_PATH:
            return False
        frontier += [v.get_node() for v in node.input_values()]
    return True


def weight_value(port: Any) -> np.ndarray:
    node = port.get_node()
    if node.get_type_name() == "Constant":
        return node.get_data()
    import openvino as ov

    sub = ov.Model([node.output(port.get_index())], [], "weight")
    return ov.Core().compile_model(sub, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({})[0]


def keep_in_float(quantized: Any, original: Any, names: list[str]) -> int:
    """Reverts the named operations of ``quantized`` (in place) to the float operations of
    ``original``; returns how many FakeQuantize nodes were removed."""
    import openvino as ov

    by_name = {op.get_friendly_name(): op for op in quantized.get_ops()}
    float_ops = {op.get_friendly_name(): op for op in original.get_ops()}
    removed = 0
    for name in names:
        node = by_name[name]
        for fq in feeding_quantizers(node):
            for target in list(fq.output(0).get_target_inputs()):
                target.replace_source_output(fq.input_value(0))
            removed += 1
        if node.get_type_name() in QUANTIZABLE and name in float_ops and is_weight(node.input_value(1)):
            weight = float_ops[name].input_value(1)
            if node.input_value(1).get_node().get_type_name() != "Constant":
                constant = ov.op.Constant(np.ascontiguousarray(weight_value(weight)))
                node.input(1).replace_source_output(constant.output(0))
    quantized.validate_nodes_and_infer_types()
    return removed


def store_constants_as_fp16(model: Any, min_bytes: int = 1 << 16) -> int:
    """Stores large float32 constants (weights kept in float, attention biases, positional
    encodings) as float16 followed by a Convert back to float32, in place; returns the
    bytes saved. Inference still runs in float32."""
    import openvino as ov

    saved = 0
    for op in model.get_ops():
        if op.get_type_name() != "Constant" or op.get_element_type() != ov.Type.f32:
            continue
        if op.get_byte_size() < min_bytes:
            continue
        half = ov.op.Constant(op.get_data().astype(np.float16))
        restored = ov.opset13.convert(half, ov.Type.f32)
        for target in list(op.output(0).get_target_inputs()):
            target.replace_source_output(restored.output(0))
        saved += op.get_byte_size() // 2
    model.validate_nodes_and_infer_types()
    return saved


# min over x of x * Phi(x), at x = -0.7518; the tanh approximation (EfficientViT) dips to -0.17004,
# and the 7e-5 it loses to clamping is far below a quantizer step (about 0.01)
GELU_MINIMUM = -0.16997


def start_gelu_ranges_at_minimum(model: Any) -> int:
    """Sets the low end of every activation quantizer that reads a GELU output to GELU's
    minimum, in place; returns how many quantizers changed.

    A symmetric quantizer spends half its 256 levels on [-high, 0), where a GELU output
    has only [-0.17, 0); starting the range at -0.17 about halves the step of the MLP's
    second linear layer's input (OpenVINO runs it as u8 with a zero point, at the same
    speed). Every other activation keeps its symmetric range.
    """
    import openvino as ov

    changed = 0
    for fq in fake_quantizers(model):
        if fq.input_value(0).get_node().get_type_name() != "Gelu":
            continue
        high = fq.input_value(2).get_node()
        if high.get_type_name() != "Constant" or np.any(high.get_data() <= 0):
            continue
        low = ov.op.Constant(np.full_like(high.get_data(), GELU_MINIMUM))
        fq.input(1).replace_source_output(low.output(0))
        fq.input(3).replace_source_output(low.output(0))
        changed += 1
    model.validate_nodes_and_infer_types()
    return changed
