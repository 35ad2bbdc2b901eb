"""GPTQ weight rounding: codes, layer inputs as rows, and the edit of a quantized graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from quantized_tiny import quantized_tiny, run

from msam_export.quantize.graph import fake_quantizers, keep_in_float, quantized_ops
from msam_export.quantize.rounding import gptq_codes, layer_rows, output_error, round_weights


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return quantized_tiny(tmp_path_factory.mktemp("tiny"))


def _correlated_inputs(rng: np.random.Generator, rows: int, basis: np.ndarray) -> np.ndarray:
    """Inputs near the span of ``basis`` (k, width), k << width, like a layer norm's outputs."""
    k, width = basis.shape
    return rng.standard_normal((rows, k)) @ basis + 0.05 * rng.standard_normal((rows, width))


def _nearest(weight: np.ndarray, scale: np.ndarray, low: int, high: int) -> np.ndarray:
    return np.clip(np.round(weight / scale[:, None]), low, high)


def test_with_uncorrelated_inputs_gptq_is_nearest_rounding():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((16, 32))
    scale = np.abs(weight).max(axis=1) / 127
    gram = np.diag(rng.uniform(0.5, 2.0, 32))
    np.testing.assert_array_equal(gptq_codes(weight, gram, scale, -127, 127), _nearest(weight, scale, -127, 127))


@pytest.mark.parametrize("low, high", [(-127, 127), (-64, 63)])  # full 8-bit; 7-bit (overflow fix)
def test_gptq_cuts_the_output_error_of_correlated_inputs_within_the_code_range(low, high):
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((24, 64))
    scale = np.abs(weight).max(axis=1) / high
    basis = rng.standard_normal((16, 64))
    x = _correlated_inputs(rng, 2000, basis)
    gram = x.T @ x
    codes = gptq_codes(weight, gram, scale, low, high)
    assert codes.min() >= low and codes.max() <= high and np.array_equal(codes, np.round(codes))
    nearest = output_error(weight, _nearest(weight, scale, low, high), scale, gram)
    assert output_error(weight, codes, scale, gram) < 0.5 * nearest
    held_out = _correlated_inputs(rng, 500, basis)  # another draw: the gain is not fitted noise
    assert np.linalg.norm((weight - codes * scale[:, None]) @ held_out.T) < np.linalg.norm(
        (weight - _nearest(weight, scale, low, high) * scale[:, None]) @ held_out.T
    )


def test_output_error_is_the_squared_error_on_the_inputs():
    rng = np.random.default_rng(2)
    weight, codes, scale = rng.standard_normal((4, 6)), rng.integers(-3, 3, (4, 6)), rng.uniform(0.1, 1, 4)
    x = rng.standard_normal((50, 6))
    expected = np.sum(((weight - codes * scale[:, None]) @ x.T) ** 2)
    assert output_error(weight, codes, scale, x.T @ x) == pytest.approx(expected)


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (1, 0)])
def test_convolution_rows_times_the_weight_are_the_convolution(stride, padding):
    import openvino as ov

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 9, 9)).astype(np.float32)
    weight = rng.standard_normal((7, 5, 3, 3)).astype(np.float32)
    image = ov.opset13.parameter(list(x.shape), ov.Type.f32)
    conv = ov.opset13.convolution(
        image, ov.opset13.constant(weight), [stride] * 2, [padding] * 2, [padding] * 2, [1, 1]
    )
    rows = layer_rows(conv, x)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), stride=stride, padding=padding)
    got = (rows @ weight.reshape(7, -1).T).reshape(2, -1, 7).transpose(0, 2, 1).reshape(expected.shape)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def _int8_weights(model) -> dict[str, np.ndarray]:
    import openvino as ov

    return {
        op.get_friendly_name(): op.get_data().copy()
        for op in model.get_ops()
        if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8
    }


def _float_constants(model) -> list[np.ndarray]:
    import openvino as ov

    return [
        op.get_data()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.f32
    ]


def test_rounding_a_quantized_model_keeps_its_graph_scales_and_code_range(models):
    original, quantized, data = models
    rounded = quantized.clone()
    report = round_weights(rounded, original, np.concatenate(data))
    assert report.slices == 8 and len(report.output_error) == 6 and not report.skipped
    assert all(0 < r <= 1 for r in report.output_error.values()) and report.mean_output_error() < 0.9
    assert [op.get_type_name() for op in rounded.get_ordered_ops()] == [
        op.get_type_name() for op in quantized.get_ordered_ops()
    ]
    before, after = _int8_weights(quantized), _int8_weights(rounded)
    changed = [
        b
        for b, a in zip(before.values(), after.values(), strict=True)
        if a.shape == b.shape and not np.array_equal(a, b)
    ]
    assert changed, "no int8 code changed"
    assert all(a.min() >= b.min() and a.max() <= b.max() for a, b in zip(before.values(), after.values(), strict=True))
    floats = [_float_constants(m) for m in (quantized, rounded)]  # the per-channel scales among them
    assert len(floats[0]) == len(floats[1]) and all(map(np.array_equal, *floats))


def test_rounding_lowers_the_model_error(models):
    original, quantized, data = models
    rounded = quantized.clone()
    round_weights(rounded, original, np.concatenate(data))
    error = [np.abs(run(m, x) - run(original, x)).mean() for m in (quantized, rounded) for x in data]
    assert np.mean(error[len(data) :]) < np.mean(error[: len(data)])


def test_keeping_a_rounded_model_in_float_restores_the_original_exactly(models):
    original, quantized, data = models
    rounded = quantized.clone()
    round_weights(rounded, original, np.concatenate(data))
    keep_in_float(rounded, original, list(quantized_ops(rounded)))
    assert fake_quantizers(rounded) == []
    np.testing.assert_allclose(run(rounded, data[0]), run(original, data[0]), atol=1e-6)


def test_the_inverse_factor_is_the_upper_cholesky_factor_of_the_inverse():
    from msam_export.quantize.rounding import _inverse_factor

    x = np.random.default_rng(4).standard_normal((300, 40))
    gram = x.T @ x + np.eye(40)
    upper = _inverse_factor(gram)
    np.testing.assert_array_equal(upper, np.triu(upper))
    np.testing.assert_allclose(upper, np.linalg.cholesky(np.linalg.inv(gram)).T, atol=1e-12)
