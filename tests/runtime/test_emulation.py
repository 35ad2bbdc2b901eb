"""The f32 emulation of INT8 arithmetic (how a CPU without VNNI measures a VNNI/AMX artifact) gives
the integer kernels' results and really runs without them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from msam_export.runtime import OpenVinoBackend
from msam_export.system import cpu_info, target_of


class Tiny(nn.Module):
    """Convolutions and a linear layer, as the encoders have them."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.fc = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 32, 1), nn.Linear(32, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.b(torch.relu(self.a(x)))).permute(0, 2, 3, 1))


def runtime_precisions(backend: OpenVinoBackend) -> set[tuple[str, str]]:
    """(layer type, precision) of the compiled encoder's weighted operations."""
    found = set()
    for op in backend.encoder.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("Convolution", "FullyConnected"):
            found.add((kind, info["runtimePrecision"].astype(str)))
    return found


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    import nncf
    import openvino as ov

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Tiny().eval(), torch.randn(1, 3, 32, 32), str(folder / "tiny.onnx"),
                          input_names=["image"], output_names=["image_embeddings"], dynamo=False)  # fmt: skip
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(8)]
    out = {}
    for name, fix in (("7-bit", nncf.OverflowFix.ENABLE), ("8-bit", nncf.OverflowFix.DISABLE)):
        params = nncf.AdvancedQuantizationParameters(overflow_fix=fix)
        model = nncf.quantize(
            ov.Core().read_model(str(folder / "tiny.onnx")), nncf.Dataset(data), advanced_parameters=params
        )
        ov.save_model(model, str(folder / f"{name}.xml"), compress_to_fp16=False)
        out[name] = folder / f"{name}.xml"
    return out, data[0]


@pytest.mark.parametrize("weights", ["7-bit", "8-bit"])
def test_the_emulation_equals_the_integer_kernels(quantized, weights):
    paths, image = quantized
    if weights == "8-bit" and target_of(cpu_info()["isa"]) not in ("vnni", "amx"):
        pytest.skip("8-bit weights saturate on this CPU (no VNNI): its integer kernels are not the target's")
    native = OpenVinoBackend(paths[weights], None)
    emulated = OpenVinoBackend(paths[weights], None, emulate_int8=True)
    assert {precision for _, precision in runtime_precisions(native)} & {"u8", "i8"}
    assert {precision for _, precision in runtime_precisions(emulated)} == {"f32"}
    a, b = native.encode(image), emulated.encode(image)
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 1e-6
