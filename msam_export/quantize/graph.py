"""Reading and editing NNCF-quantized OpenVINO graphs.

A quantized operation (Convolution, GroupConvolution, MatMul) has FakeQuantize
nodes on its activation inputs and an int8 weight constant with a dequantization
subgraph (Convert, Multiply) on its weight input. Keeping it in float means
removing those activation FakeQuantize nodes and putting back the FP32 weight
constant of the original model. Without bias correction and SmoothQuant (both off
in our recipe, see ``openvino.py``) that restores the original operation exactly.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

QUANTIZABLE = ("Convolution", "GroupConvolution", "MatMul")


def fake_quantizers(model: Any) -> list[Any]:
    return [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]


def quantized_ops(model: Any) -> dict[str, Any]:
    """Name -> operation, for operations with an activation FakeQuantize on an input."""
    ops = {}
    for fq in fake_quantizers(model):
        for target in fq.output(0).get_target_inputs():
            node = target.get_node()
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


def _weight_value(port: Any) -> np.ndarray:
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
        for port in node.inputs():
            source = port.get_source_output().get_node()
            if source.get_type_name() == "FakeQuantize":
                port.replace_source_output(source.input_value(0))
                removed += 1
        if node.get_type_name() in QUANTIZABLE and name in float_ops:
            weight = float_ops[name].input_value(1)
            if node.input_value(1).get_node().get_type_name() != "Constant":
                constant = ov.op.Constant(np.ascontiguousarray(_weight_value(weight)))
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
