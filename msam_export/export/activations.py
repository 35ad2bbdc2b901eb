"""Activations rewritten for tracing: the same functions, in forms the runtimes run faster.

GELU's tanh approximation (EfficientViT, so MedficientSAM L0/L1/L2) is traced as
``x * sigmoid(2u)`` instead of ``0.5 * x * (1 + tanh(u))``, ``u = sqrt(2/pi) (x + 0.044715 x^3)``.
The two are the same function (``0.5 (1 + tanh(u)) == sigmoid(2u)``) and agree to float
rounding. OpenVINO's CPU plugin on AVX2 runs the sigmoid form about 3x faster (the L0
encoder's activations: 175 -> 56 ms of a 790 ms run on a 2-core AMD EPYC); ONNX Runtime
runs both at the same speed. The PyTorch modules themselves are left as they are: the
eager reference keeps ``nn.GELU(approximate="tanh")``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

_TWO_SQRT_2_OVER_PI = 2.0 * math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715


class SigmoidTanhGelu(nn.Module):
    """``nn.GELU(approximate="tanh")`` as ``x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))``; any shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x * (_TWO_SQRT_2_OVER_PI + _TWO_SQRT_2_OVER_PI * _CUBIC * x * x))


def _rewrite(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.GELU) and module.approximate == "tanh":
        return SigmoidTanhGelu()
    return None


@contextmanager
def traceable_activations(root: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``root``'s tanh GELUs are :class:`SigmoidTanhGelu`; restored after."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if (replacement := _rewrite(child)) is not None:
                setattr(parent, name, replacement)
                swapped.append((parent, name, child))
    try:
        yield root
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
