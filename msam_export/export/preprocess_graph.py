"""An encoder graph that takes the raw uint8 image (``--with-preprocess``).

Resize (torch's uint8 bilinear kernel, emulated exactly: separable, int16
fixed-point weights, horizontal pass then vertical, uint8 between passes),
min-max scaling and zero padding run inside the graph, for H and W dynamic.
"""

from __future__ import annotations

import torch
from torch import nn

TAPS = 3  # a bilinear (support 1) output pixel reads at most 3 input pixels


def _fixed_point_weights(
    in_size: torch.Tensor, out_size: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (out,3), int weights (out,3) and precision, as torch's
    ``_compute_index_ranges_int16_weights`` (align_corners=False, no antialias).

    Sizes are 1-element 1-D tensors: the ONNX exporter computes arithmetic between
    0-d tensors in float32, which would move weights off torch's double values.
    """
    scale = in_size.to(torch.float64) / out_size.to(torch.float64)
    center = scale * (torch.arange(out_size[0]).to(torch.float64) + 0.5)
    xmin = torch.clamp(torch.floor(center - 0.5), min=0)  # C++ truncation; equal after the clamp
    xmax = torch.minimum(torch.floor(center + 1.5), in_size.to(torch.float64))
    taps = torch.arange(TAPS, dtype=torch.float64)
    position = xmin[:, None] + taps[None, :]
    weight = torch.clamp(1 - torch.abs(position - center[:, None] + 0.5), min=0)
    weight = torch.where(taps[None, :] < (xmax - xmin)[:, None], weight, torch.zeros_like(weight))
    total = (weight[:, 0:1] + weight[:, 1:2]) + weight[:, 2:3]  # C++'s summation order, bit for bit
    weight = weight / total
    steps = torch.arange(22, dtype=torch.float64)
    fits = torch.floor(0.5 + weight.max() * torch.pow(2.0, steps + 1)) >= 32768
    precision = torch.where(fits.any(), torch.argmax(fits.to(torch.int64)), torch.tensor(22))
    weight_int = torch.floor(0.5 + weight * torch.pow(2.0, precision.to(torch.float64)))
    index = torch.minimum(position, in_size.to(torch.float64) - 1).to(torch.int64)
    return index, weight_int.to(torch.int64), precision


def _resample_last_axis(x: torch.Tensor, out_size: torch.Tensor) -> torch.Tensor:
    """int64 (..., in) -> uint8-valued int64 (..., out) along the last axis."""
    index, weight, precision = _fixed_point_weights(torch._shape_as_tensor(x)[-1:], out_size)
    gathered = x[..., index]  # (..., out, 3)
    total = (gathered * weight).sum(dim=-1) + torch.pow(2, precision - 1)
    return torch.clamp(torch.div(total, torch.pow(2, precision), rounding_mode="floor"), 0, 255)


class PreprocessingEncoder(nn.Module):
    """uint8 (H,W,3) -> image_embeddings (1,256,64,64), resized_size (2,), original_size (2,).

    Same preprocessing as ``msam_export.contract.preprocess`` with the "bilinear" rule.
    """

    def __init__(self, encoder: nn.Module, size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.size = size

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hw = torch._shape_as_tensor(image)[:2]
        longest = torch.max(hw, dim=0, keepdim=True).values.to(torch.float64)
        new = torch.floor(hw.to(torch.float64) * self.size / longest + 0.5).to(torch.int64)
        x = image.permute(2, 0, 1).to(torch.int64)  # (3, H, W)
        x = _resample_last_axis(x, new[1:2])  # horizontal pass
        x = _resample_last_axis(x.transpose(1, 2), new[0:1]).transpose(1, 2)  # vertical pass
        x = x.to(torch.float32)
        x = (x - x.min()) / torch.clamp(x.max() - x.min(), min=1e-8)
        pad = [0, self.size - new[1], 0, self.size - new[0]]
        x = nn.functional.pad(x.unsqueeze(0), pad)
        return self.encoder(x), new, hw
