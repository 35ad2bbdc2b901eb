"""EfficientViT-SAM image encoder (MedficientSAM L0/L1/L2).

An EfficientViT-L backbone, a ``SamNeck`` that fuses stages 2-4 at 64x64, and a
channel LayerNorm. Module names follow mit-han-lab/efficientvit so that the
original state dicts load unchanged (``backbone.stages.N.op_list.M...``,
``neck.input_ops``/``middle``/``output_ops``, ``norm``).

Details that matter for bit-level agreement with the original (see
shared/golden/NOTES.md): GELU is the tanh approximation everywhere; every norm
has eps 1e-6; stage features are resized to 64x64 with bicubic interpolation;
LiteMLA pads v with a row of ones and divides by that row plus 1e-15.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d

NORM_EPS = 1e-6
ATTENTION_EPS = 1e-15
EMBED_SIZE = 64


def _gelu() -> nn.Module:
    return nn.GELU(approximate="tanh")


class ConvLayer(nn.Module):
    """Conv2d (same padding) -> optional BatchNorm2d -> optional GELU(tanh)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        act: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias
        )
        self.norm = nn.BatchNorm2d(out_channels, eps=NORM_EPS) if norm else None
        self.act = _gelu() if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, H, W) -> (B, Cout, H/stride, W/stride)."""
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x


class OpSequential(nn.Module):
    """Runs ``op_list`` in order (efficientvit's container, kept for key names)."""

    def __init__(self, ops: list[nn.Module]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class Residual(nn.Module):
    """``main(x) + x`` when ``shortcut``, else ``main(x)``."""

    def __init__(self, main: nn.Module, shortcut: bool = True) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.main(x)
        return out + x if self.shortcut else out


class ResBlock(nn.Module):
    """Two 3x3 convs: conv1 (norm, GELU), conv2 (norm)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expand_ratio: float = 1.0) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.conv1 = ConvLayer(in_channels, mid, 3, stride, act=True)
        self.conv2 = ConvLayer(mid, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class FusedMBConv(nn.Module):
    """3x3 expanding conv (norm, GELU) then 1x1 projecting conv (norm)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expand_ratio: float = 4.0) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.spatial_conv = ConvLayer(in_channels, mid, 3, stride, act=True)
        self.point_conv = ConvLayer(mid, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.spatial_conv(x))


class MBConv(nn.Module):
    """Inverted bottleneck with "fewer norms": 1x1 (bias, GELU), 3x3 depthwise
    (bias, GELU), 1x1 (BatchNorm)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expand_ratio: float = 4.0) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.inverted_conv = ConvLayer(in_channels, mid, 1, bias=True, norm=False, act=True)
        self.depth_conv = ConvLayer(mid, mid, 3, stride, groups=mid, bias=True, norm=False, act=True)
        self.point_conv = ConvLayer(mid, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention.

    qkv is a 1x1 conv; a 5x5 depthwise + grouped 1x1 branch aggregates it to a
    second scale; both scales attend with ReLU kernels and the result is
    projected back to ``channels``.

    Args:
        channels: C, in and out.
        head_dim: channels per head (heads = C // head_dim).
        scales: kernel sizes of the aggregation branches.
    """

    def __init__(self, channels: int, head_dim: int = 32, scales: tuple[int, ...] = (5,)) -> None:
        super().__init__()
        heads = channels // head_dim
        total = heads * head_dim
        self.head_dim = head_dim
        self.qkv = ConvLayer(channels, 3 * total, 1, norm=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * total, 3 * total, k, padding=k // 2, groups=3 * total, bias=False),
                nn.Conv2d(3 * total, 3 * total, 1, groups=3 * heads, bias=False),
            )
            for k in scales
        )
        self.proj = ConvLayer(total * (1 + len(scales)), channels, 1)

    def _linear_attention(self, qkv: torch.Tensor) -> torch.Tensor:
        """(B, 3*heads*dim, H, W) -> (B, heads*dim, H, W)."""
        b, _, h, w = qkv.shape
        d = self.head_dim
        qkv = qkv.reshape(b, -1, 3 * d, h * w)
        q = torch.relu(qkv[:, :, :d])
        k = torch.relu(qkv[:, :, d : 2 * d])
        v = F.pad(qkv[:, :, 2 * d :], (0, 0, 0, 1), mode="constant", value=1.0)
        out = torch.matmul(torch.matmul(v, k.transpose(-1, -2)), q)
        out = out[:, :, :-1] / (out[:, :, -1:] + ATTENTION_EPS)
        return out.reshape(b, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        return self.proj(self._linear_attention(qkv))


class EfficientViTBlock(nn.Module):
    """LiteMLA (context) then MBConv (local), each with a residual."""

    def __init__(self, channels: int, head_dim: int = 32, expand_ratio: float = 6.0) -> None:
        super().__init__()
        self.context_module = Residual(LiteMLA(channels, head_dim))
        self.local_module = Residual(MBConv(channels, channels, 1, expand_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))


@dataclass(frozen=True)
class EfficientViTConfig:
    """Widths, depths and neck depth of one EfficientViT-L variant."""

    depths: tuple[int, int, int, int, int]
    head_depth: int
    widths: tuple[int, int, int, int, int] = (32, 64, 128, 256, 512)
    expand: tuple[int, int, int, int, int] = (1, 4, 4, 4, 6)
    head_width: int = 256
    head_dim: int = 32


CONFIGS: dict[str, EfficientViTConfig] = {
    "l0": EfficientViTConfig(depths=(1, 1, 1, 4, 4), head_depth=4),
    "l1": EfficientViTConfig(depths=(1, 1, 1, 6, 6), head_depth=8),
    "l2": EfficientViTConfig(depths=(1, 2, 2, 8, 8), head_depth=12),
}


class EfficientViTLargeBackbone(nn.Module):
    """Five stages: res, fmb, fmb, mb, attention; strides 2 to 32.

    ``forward`` returns the outputs of stages 2, 3 and 4, i.e. (B,128,S/8,S/8),
    (B,256,S/16,S/16) and (B,512,S/32,S/32).
    """

    def __init__(self, cfg: EfficientViTConfig) -> None:
        super().__init__()
        w, d, e = cfg.widths, cfg.depths, cfg.expand
        stem = [ConvLayer(3, w[0], 3, 2, act=True)]
        stem += [Residual(ResBlock(w[0], w[0], 1, e[0])) for _ in range(d[0])]
        stages = [OpSequential(stem)]
        block_types: list[type[nn.Module]] = [FusedMBConv, FusedMBConv, MBConv]
        for i, block in enumerate(block_types, start=1):
            ops = [Residual(block(w[i - 1], w[i], 2, e[i] * 4), shortcut=False)]
            ops += [Residual(block(w[i], w[i], 1, e[i])) for _ in range(d[i])]
            stages.append(OpSequential(ops))
        attention = [Residual(MBConv(w[3], w[4], 2, e[4] * 4), shortcut=False)]
        attention += [EfficientViTBlock(w[4], cfg.head_dim, e[4]) for _ in range(d[4])]
        stages.append(OpSequential(attention))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) -> [stage2, stage3, stage4] feature maps."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features[2:]


class Resize(nn.Module):
    """Bicubic resize to ``size`` (align_corners=False); identity when already there."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x  # bicubic at scale 1 is an exact identity
        return F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False)


class SamNeck(nn.Module):
    """Fuses stages 4, 3, 2 at 64x64 into a 256-channel embedding.

    Each input: 1x1 conv + BN + bicubic resize; merged by ``s4 + (s3 + s2)``;
    ``head_depth`` residual FusedMBConvs; a 1x1 conv with bias.
    """

    def __init__(self, in_channels: tuple[int, int, int], head_width: int, head_depth: int) -> None:
        super().__init__()
        self.input_ops = nn.ModuleList(
            OpSequential([ConvLayer(c, head_width, 1), Resize(EMBED_SIZE)]) for c in in_channels
        )
        self.middle = OpSequential([Residual(FusedMBConv(head_width, head_width, 1, 1.0)) for _ in range(head_depth)])
        self.output_ops = nn.ModuleList([OpSequential([ConvLayer(head_width, 256, 1, bias=True, norm=False)])])

    def forward(self, stage4: torch.Tensor, stage3: torch.Tensor, stage2: torch.Tensor) -> torch.Tensor:
        """Stage features -> (B, 256, 64, 64)."""
        s4, s3, s2 = (op(x) for op, x in zip(self.input_ops, (stage4, stage3, stage2), strict=True))
        fused = s4 + (s3 + s2)
        return self.output_ops[0](self.middle(fused))


class EfficientViTSamEncoder(nn.Module):
    """MedficientSAM image encoder: (B, 3, 512, 512) in [0, 1] -> (B, 256, 64, 64)."""

    def __init__(self, cfg: EfficientViTConfig) -> None:
        super().__init__()
        self.backbone = EfficientViTLargeBackbone(cfg)
        w = cfg.widths
        self.neck = SamNeck((w[4], w[3], w[2]), cfg.head_width, cfg.head_depth)
        self.norm = LayerNorm2d(256, eps=NORM_EPS)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        stage2, stage3, stage4 = self.backbone(image)
        return self.norm(self.neck(stage4, stage3, stage2))


def build_efficientvit_encoder(variant: str) -> EfficientViTSamEncoder:
    """Encoder for MedficientSAM ``variant`` ("l0", "l1" or "l2")."""
    return EfficientViTSamEncoder(CONFIGS[variant])
