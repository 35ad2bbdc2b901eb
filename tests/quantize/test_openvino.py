"""What INT8 quantization measures: models as they will be saved."""

from __future__ import annotations

import numpy as np

from msam_export.artifact import ENCODER_INPUT, ENCODER_OUTPUT
from msam_export.quantize.graph import store_constants_as_fp16
from msam_export.quantize.openvino import compiler


def _encoder_like():
    """image (1, 256) -> image_embeddings (1, 256) through a 256 KiB float weight."""
    import openvino as ov

    image = ov.opset13.parameter([1, 256], ov.Type.f32, name=ENCODER_INPUT)
    weight = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32) / 16 + 1 / 3
    out = ov.opset13.matmul(image, ov.opset13.constant(weight), False, False)
    out.output(0).set_names({ENCODER_OUTPUT})
    return ov.Model([out.output(0)], [image])


def test_as_saved_measures_float_constants_rounded_to_fp16_and_leaves_the_model_alone():
    model = _encoder_like()
    x = np.random.default_rng(1).standard_normal((1, 256)).astype(np.float32)
    plain = compiler(1)(model).encode(x)
    measured = compiler(1, as_saved=True)(model).encode(x)
    rounded = model.clone()
    assert store_constants_as_fp16(rounded) > 0
    np.testing.assert_array_equal(measured, compiler(1)(rounded).encode(x))
    assert not np.array_equal(measured, plain)
    np.testing.assert_array_equal(compiler(1)(model).encode(x), plain)  # the model itself is not changed
