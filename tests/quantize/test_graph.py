"""Editing quantized OpenVINO graphs: module paths, keeping ops in float, fp16 constants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from quantized_tiny import quantized_tiny, run
from torch import nn

from msam_export.quantize.graph import (
    GELU_MINIMUM,
    SHAPE_ONLY,
    fake_quantizers,
    feeding_quantizers,
    groups,
    keep_in_float,
    module_path,
    quantized_ops,
    start_gelu_ranges_at_minimum,
    store_constants_as_fp16,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return quantized_tiny(tmp_path_factory.mktemp("tiny"))


def test_groups_follow_module_names(models):
    _, quantized, _ = models
    found = groups(quantized, depth=1)
    assert set(found) == {"stem", "head", "tokens"}
    assert sum(len(v) for v in found.values()) == len(quantized_ops(quantized)) == 6


def test_module_path_walks_up_to_a_named_op(models):
    _, quantized, _ = models
    paths = {module_path(op, depth=2) for op in quantized_ops(quantized).values()}
    assert paths == {"stem/stem.0", "stem/stem.2", "head/head.0", "head/head.2", "tokens/q", "tokens/k"}


def test_quantizers_are_found_behind_shape_only_operations(models):
    _, quantized, _ = models
    ops = quantized_ops(quantized)
    (shared,) = feeding_quantizers(ops["/tokens/q/MatMul"])
    assert feeding_quantizers(ops["/tokens/k/MatMul"]) == [shared]
    readers = {t.get_node().get_type_name() for t in shared.output(0).get_target_inputs()}
    assert "MatMul" not in readers and readers & set(SHAPE_ONLY)


def test_keeping_everything_in_float_restores_the_original_exactly(models):
    original, quantized, data = models
    x = data[0]
    int8_error = np.abs(run(quantized, x) - run(original, x)).max()
    assert int8_error > 1e-4  # quantization did change the output
    restored = quantized.clone()
    removed = keep_in_float(restored, original, list(quantized_ops(quantized)))
    assert removed == len(fake_quantizers(quantized))  # each activation quantizer once; weights are int8
    assert fake_quantizers(restored) == []
    np.testing.assert_allclose(run(restored, x), run(original, x), atol=1e-6)


def test_keeping_one_module_in_float_lowers_the_error(models):
    original, quantized, data = models
    partial = quantized.clone()
    keep_in_float(partial, original, groups(quantized, depth=1)["stem"])
    x = data[1]
    reference = run(original, x)
    assert np.abs(run(partial, x) - reference).mean() < np.abs(run(quantized, x) - reference).mean()


def test_keeping_a_module_behind_a_reshape_in_float_removes_its_shared_quantizer(models):
    original, quantized, data = models
    partial = quantized.clone()
    removed = keep_in_float(partial, original, groups(quantized, depth=1)["tokens"])
    assert removed == 1  # the one quantizer q and k share
    assert len(fake_quantizers(partial)) == len(fake_quantizers(quantized)) - 1
    assert not any(name.startswith("/tokens/") for name in quantized_ops(partial))
    x = data[2]
    reference = run(original, x)
    assert np.abs(run(partial, x) - reference).mean() < np.abs(run(quantized, x) - reference).mean()


def test_fp16_constants_halve_large_float_constants(models):
    original, _, data = models
    model = original.clone()
    saved = store_constants_as_fp16(model, min_bytes=1024)
    assert saved > 0
    out, ref = run(model, data[0]), run(original, data[0])
    np.testing.assert_allclose(out, ref, atol=1e-2 * np.abs(ref).max())
    assert not np.array_equal(out, ref)  # weights really were rounded


def test_gelu_minimum_is_the_minimum_of_gelu():
    x = torch.linspace(-4, 4, 800_001, dtype=torch.float64)
    assert float(nn.functional.gelu(x).min()) == pytest.approx(GELU_MINIMUM, abs=1e-5)


def test_gelu_quantizers_start_at_gelu_minimum(models):
    _, quantized, _ = models
    tightened = quantized.clone()
    assert start_gelu_ranges_at_minimum(tightened) == 2  # stem.1 and head.1
    for fq in fake_quantizers(tightened):
        low = fq.input_value(1).get_node().get_data()
        reads_gelu = fq.input_value(0).get_node().get_type_name() == "Gelu"
        assert np.all(low == np.float32(GELU_MINIMUM)) == reads_gelu


def test_a_gelu_range_from_its_minimum_cuts_the_quantization_error():
    import openvino as ov

    x = ov.opset13.parameter([1, 4096], ov.Type.f32)
    gelu = ov.opset13.gelu(x, "erf")
    high = np.float32(3.0)
    low, top = (ov.opset13.constant(np.array([v], np.float32)) for v in (-high * 128 / 127, high))
    fq = ov.opset13.fake_quantize(gelu, low, top, low, top, 256)
    model = ov.Model([fq.output(0), gelu.output(0)], [x])
    values = np.random.default_rng(0).uniform(-4, 3, (1, 4096)).astype(np.float32)

    def error(m):
        out = ov.Core().compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(values)
        return np.abs(out[0] - out[1]).mean()

    symmetric = error(model)
    assert start_gelu_ranges_at_minimum(model) == 1
    assert error(model) < 0.7 * symmetric  # the step is 0.53x; measured 0.63x
