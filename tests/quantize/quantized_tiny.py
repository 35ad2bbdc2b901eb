"""A tiny encoder-like model quantized by NNCF as the package quantizes, shared by the graph
and weight-rounding tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Tokens(nn.Module):
    """Two linear layers reading one tensor through a reshape, like a transformer block's q and k."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.k = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, HW, C)
        return self.q(tokens) + self.k(tokens)


class Tiny(nn.Module):
    """Three named "modules" (convs, then linear layers behind shape-only operations),
    like the zoo's encoders."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GELU(), nn.Conv2d(16, 16, 1))
        self.head = nn.Sequential(nn.Conv2d(16, 32, 1), nn.GELU(), nn.Conv2d(32, 8, 1))
        self.tokens = Tokens()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(self.head(self.stem(x)))


def quantized_tiny(folder: Path):
    """(FP32 OpenVINO model, its NNCF INT8 model, 8 inputs (1, 3, 32, 32)) of ``Tiny``."""
    import nncf
    import openvino as ov

    torch.manual_seed(0)
    path = folder / "tiny.onnx"
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
        model_type=nncf.ModelType.TRANSFORMER,  # as the package quantizes: no quantizers on elementwise adds
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            disable_bias_correction=True,
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(convolution=-1, matmul=-1),
        ),
    )
    return original, quantized, data


def run(model, x):
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(x)[0]
