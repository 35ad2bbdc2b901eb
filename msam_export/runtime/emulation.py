"""Exact emulation of INT8 arithmetic in f32, for a CPU that lacks the artifact's target arithmetic.

An INT8 model holds int8 weight constants with a dequantization subgraph (Convert, Subtract,
Multiply) and FakeQuantize nodes on activations. On a CPU without VNNI the plugin would run
u8 x s8 kernels whose 16-bit sums saturate with full 8-bit weights; the target CPU (VNNI/AMX)
accumulates in 32 bits. Here every weight subgraph is folded into its dequantized f32 constant
and the plugin's low-precision transformations are off, so each FakeQuantize runs as an f32
quantize-dequantize and each product in f32: the integer results, exactly (f32 holds the
products and sums of 8-bit integers times one scale), without saturation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WEIGHTED = ("Convolution", "GroupConvolution", "MatMul")
_CONSTANT_OPS = ("Constant", "Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze", "Squeeze")


def _is_constant_subgraph(output: Any, limit: int = 16) -> bool:
    """Whether ``output`` is computed from constants only (a weight and its dequantization)."""
    frontier, seen = [output.get_node()], 0
    while frontier and seen < limit:
        node = frontier.pop()
        seen += 1
        if node.get_type_name() not in _CONSTANT_OPS:
            return False
        frontier += [value.get_node() for value in node.input_values()]
    return not frontier


def fold_weights(model: Any) -> int:
    """Replaces, in place, every weight input of a Convolution/MatMul that is a dequantization
    subgraph by its f32 value (computed once for all); returns how many were folded."""
    import openvino as ov

    targets = []
    for op in model.get_ops():
        if op.get_type_name() in WEIGHTED and op.get_input_size() > 1:
            weight = op.input_value(1)
            if weight.get_node().get_type_name() != "Constant" and _is_constant_subgraph(weight):
                targets.append((op, weight))
    if not targets:
        return 0
    weights = ov.Model([w for _, w in targets], [], "weights")
    values = ov.Core().compile_model(weights, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({})
    for i, (op, _) in enumerate(targets):
        constant = ov.op.Constant(np.ascontiguousarray(values[i], dtype=np.float32))
        op.input(1).replace_source_output(constant.output(0))
    model.validate_nodes_and_infer_types()
    return len(targets)
