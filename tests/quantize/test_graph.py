"""Editing quantized OpenVINO graphs: module paths, keeping ops in float, fp16 constants."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from msam_export.quantize.graph import groups, keep_in_float, module_path, quantized_ops, store_constants_as_fp16


class Tiny(nn.Module):
    """Two named "modules" with a conv and a linear layer each, like the zoo's encoders."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GELU(), nn.Conv2d(16, 16, 1))
        self.head = nn.Sequential(nn.Conv2d(16, 32, 1), nn.GELU(), nn.Conv2d(32, 8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import nncf
    import openvino as ov

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Tiny().eval(), torch.randn(1, 3, 32, 32), str(path), input_names=["image"], dynamo=False)
    original = ov.Core().read_model(str(path))
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(8)]
    quantized = nncf.quantize(
        original,
        nncf.Dataset(data),
        subset_size=8,
        advanced_parameters=nncf.AdvancedQuantizationParameters(disable_bias_correction=True),
    )
    return original, quantized, data


def _run(model, x):
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(x)[0]


def test_groups_follow_module_names(models):
    _, quantized, _ = models
    found = groups(quantized, depth=1)
    assert set(found) == {"stem", "head"}
    assert sum(len(v) for v in found.values()) == len(quantized_ops(quantized)) == 4


def test_module_path_walks_up_to_a_named_op(models):
    _, quantized, _ = models
    paths = {module_path(op, depth=2) for op in quantized_ops(quantized).values()}
    assert paths == {"stem/stem.0", "stem/stem.2", "head/head.0", "head/head.2"}


def test_keeping_everything_in_float_restores_the_original_exactly(models):
    original, quantized, data = models
    x = data[0]
    int8_error = np.abs(_run(quantized, x) - _run(original, x)).max()
    assert int8_error > 1e-4  # quantization did change the output
    restored = quantized.clone()
    removed = keep_in_float(restored, original, list(quantized_ops(quantized)))
    assert removed >= 4
    np.testing.assert_allclose(_run(restored, x), _run(original, x), atol=1e-6)


def test_keeping_one_module_in_float_lowers_the_error(models):
    original, quantized, data = models
    partial = quantized.clone()
    keep_in_float(partial, original, groups(quantized, depth=1)["stem"])
    x = data[1]
    reference = _run(original, x)
    assert np.abs(_run(partial, x) - reference).mean() < np.abs(_run(quantized, x) - reference).mean()


def test_fp16_constants_halve_large_float_constants(models):
    original, _, data = models
    model = original.clone()
    saved = store_constants_as_fp16(model, min_bytes=1024)
    assert saved > 0
    out, ref = _run(model, data[0]), _run(original, data[0])
    np.testing.assert_allclose(out, ref, atol=1e-2 * np.abs(ref).max())
    assert not np.array_equal(out, ref)  # weights really were rounded
