"""Tracing-time activation rewrites: the same function, the modules restored afterwards."""

from __future__ import annotations

import onnx
import torch
from torch import nn

from msam_export.export.activations import SigmoidTanhGelu, traceable_activations
from msam_export.export.onnx import _export


def test_sigmoid_form_is_the_tanh_gelu():
    x = torch.cat([torch.linspace(-12, 12, 100_001), torch.tensor([-1e4, -50.0, 0.0, 50.0, 1e4])])
    expected = nn.GELU(approximate="tanh")(x.double())
    got = SigmoidTanhGelu()(x).double()
    torch.testing.assert_close(got, expected, rtol=2e-6, atol=2e-7)


def _block() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(approximate="tanh"), nn.Sequential(nn.GELU()))


def test_swaps_only_tanh_gelu_and_restores():
    block = _block()
    original = block[1]
    with traceable_activations(block):
        assert isinstance(block[1], SigmoidTanhGelu)
        assert isinstance(block[2][0], nn.GELU) and block[2][0].approximate == "none"  # erf GELU has no such form
    assert block[1] is original


def test_traced_graph_has_sigmoid_not_tanh(tmp_path):
    block = _block().eval()
    path = tmp_path / "block.onnx"
    names = {"inputs": ["x"], "outputs": ["y"]}
    _export(block, (torch.zeros(1, 3, 8, 8),), path, 17, names, {})
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Sigmoid" in ops and "Tanh" not in ops
    assert isinstance(block[1], nn.GELU)
