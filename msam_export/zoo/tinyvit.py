"""TinyViT image encoder of LiteMedSAM (MobileSAM's TinyViT-5M variant).

An inference-only re-implementation of the encoder in LiteMedSAM's
``tiny_vit_sam.py``; parameter and buffer names match the ``image_encoder.*``
part of the LiteMedSAM checkpoint, so its weights load with ``strict=True``.

Differences from the classification TinyViT that this variant inherits from
MobileSAM and LiteMedSAM:

* The patch embedding is two 1x1 convolutions, so the first stage runs at
  the full input resolution (256x256 for LiteMedSAM).
* The last patch merging (into the final stage) has stride 1, so the last two
  stages share one resolution (64x64 for a 256 input).
* There is no classification head; a SAM-style neck maps the last stage to
  256 channels.

Windowed attention pads the token grid with zeros up to a multiple of the
window size and does *not* mask the padded tokens, exactly as the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from msam_export.zoo.common import LayerNorm2d


class Conv2dBN(nn.Module):
    """A bias-free ``nn.Conv2d`` followed by ``nn.BatchNorm2d`` (eps 1e-5).

    Args:
        in_chans: C_in.
        out_chans: C_out.
        kernel_size: square kernel size.
        stride: convolution stride.
        padding: zero padding on every side.
        groups: convolution groups (``in_chans`` for depthwise).
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H', W')."""
        return self.bn(self.c(x))


class PatchEmbed(nn.Module):
    """Two 1x1 ``Conv2dBN`` with a GELU between them; keeps the resolution.

    Args:
        in_chans: image channels.
        embed_dim: channels of the first stage.
    """

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, embed_dim, H, W)."""
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project.

    Args:
        dim: channels in and out.
        expand_ratio: hidden channels are ``int(dim * expand_ratio)``.
    """

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim, H, W) -> (B, dim, H, W)."""
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        y = self.conv3(y)
        return self.act3(x + y)


class PatchMerging(nn.Module):
    """1x1 conv, 3x3 depthwise conv with ``stride``, 1x1 conv (GELU between).

    Args:
        dim: channels in.
        out_dim: channels out.
        stride: stride of the depthwise conv (2 halves H and W, 1 keeps them).
    """

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, kernel_size=3, stride=stride, padding=1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim, H, W) -> (B, out_dim, H / stride, W / stride)."""
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


class ConvLayer(nn.Module):
    """First TinyViT stage: ``depth`` MBConv blocks, then optional merging.

    Args:
        dim: channels of the stage.
        depth: number of MBConv blocks.
        expand_ratio: MBConv expansion ratio.
        downsample: patch merging applied after the blocks, or None.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        expand_ratio: float,
        downsample: PatchMerging | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim, H, W) -> (B, C_out, H', W') (C_out, H', W' set by downsample)."""
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class Mlp(nn.Module):
    """Pre-norm MLP: LayerNorm (eps 1e-5), Linear, exact GELU, Linear.

    Args:
        dim: features in and out.
        hidden_dim: hidden features.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) -> (B, N, dim)."""
        return self.fc2(self.act(self.fc1(self.norm(x))))


def attention_bias_indices(height: int, width: int) -> torch.Tensor:
    """Index of the learned bias for every pair of positions in a window.

    The pair (p1, p2) uses the bias of offset ``(|dy|, |dx|)``, numbered
    ``|dy| * width + |dx|``: the order in which the reference meets the
    offsets when it enumerates pairs in row-major order.

    Returns:
        (height * width, height * width) int64.
    """
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    dy = (rows[:, None] - rows[None, :]).abs()
    dx = (cols[:, None] - cols[None, :]).abs()
    return dy * width + dx


class Attention(nn.Module):
    """Pre-norm multi-head attention with learned relative position biases.

    ``qkv`` packs, per head, ``key_dim`` query, ``key_dim`` key and
    ``key_dim`` value features (head-major, as the checkpoint does).

    Args:
        dim: features in and out.
        key_dim: features per head.
        num_heads: number of heads.
        resolution: (h, w) of the window the tokens come from; N = h * w.
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim**-0.5
        inner_dim = key_dim * num_heads

        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner_dim)
        self.proj = nn.Linear(inner_dim, dim)

        height, width = resolution
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, height * width))
        self.register_buffer(
            "attention_bias_idxs",
            attention_bias_indices(height, width),
            persistent=False,
        )

    def _split_qkv(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The packed (head-major) qkv weights and biases as q, k and v parts."""
        dim = self.qkv.weight.shape[1]
        weights = self.qkv.weight.view(self.num_heads, 3, self.key_dim, dim).unbind(1)
        biases = self.qkv.bias.view(self.num_heads, 3, self.key_dim).unbind(1)
        return [w.reshape(-1, dim) for w in weights], [b.reshape(-1) for b in biases]

    def expose_weights(self) -> None:
        """Replaces the packed ``qkv`` by three Linear modules ``q``, ``k`` and ``v`` with its
        q, k and v parts (same outputs). Cut from ``qkv`` at run time, their weights are computed
        tensors, which NNCF's torch backend leaves in float (it quantizes parameters a module
        uses as they are); quantization-aware training needs them as parameters."""
        for name, weight, bias in zip("qkv", *self._split_qkv(), strict=True):
            linear = nn.Linear(weight.shape[1], weight.shape[0])
            linear.weight = nn.Parameter(weight.detach().clone())
            linear.bias = nn.Parameter(bias.detach().clone())
            setattr(self, name, linear)
        del self.qkv

    def _project(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(T, dim) tokens -> their q, k and v, each (T, num_heads * key_dim)."""
        if "qkv" not in self._modules:
            return [self.q(x), self.k(x), self.v(x)]
        return [F.linear(x, weight, bias) for weight, bias in zip(*self._split_qkv(), strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) -> (B, N, dim)."""
        b, n, _ = x.shape
        # three projections cut from the packed qkv weights rather than one projection
        # whose (B, heads, N, 3*key_dim) permutation is split (LiteMedSAM's encoder
        # transposes, profiled in OpenVINO: 75 -> 52 ms of about 850 ms); on (B*N, dim)
        # tokens, so that each traces to a Gemm with its bias: as 3D MatMuls OpenVINO
        # merged them into one and split the output, with the bias adds left apart
        # (about 40 ms of split and adds)
        x = self.norm(x).reshape(b * n, -1)
        q, k, v = (t.view(b, n, self.num_heads, self.key_dim).transpose(1, 2) for t in self._project(x))
        bias = self.attention_biases[:, self.attention_bias_idxs]  # (num_heads, N, N)
        attn = (q @ k.transpose(-2, -1)) * self.scale + bias
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.key_dim)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    """Window attention, depthwise 3x3 conv, MLP; residuals around attn and MLP.

    Args:
        dim: features per token.
        input_resolution: (H, W) of the token grid.
        num_heads: attention heads (must divide ``dim``).
        window_size: side of the square attention windows.
        mlp_ratio: MLP hidden features are ``int(dim * mlp_ratio)``.
        local_conv_size: kernel size of the depthwise conv.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.input_resolution = input_resolution
        self.window_size = window_size

        self.attn = Attention(dim, dim // num_heads, num_heads, resolution=(window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(
            dim,
            dim,
            kernel_size=local_conv_size,
            padding=local_conv_size // 2,
            groups=dim,
        )

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H*W, C) -> (B, H*W, C): attention inside zero-padded windows."""
        h, w = self.input_resolution
        ws = self.window_size
        if h == ws and w == ws:
            return self.attn(x)

        b, n, c = x.shape
        x = x.view(b, h, w, c)
        pad_b = (ws - h % ws) % ws
        pad_r = (ws - w % ws) % ws
        if pad_b > 0 or pad_r > 0:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        nh, nw = (h + pad_b) // ws, (w + pad_r) // ws

        # (B, nh, ws, nw, ws, C) -> (B * nh * nw, ws * ws, C)
        x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        x = self.attn(x)
        x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, nh * ws, nw * ws, c)

        if pad_b > 0 or pad_r > 0:
            x = x[:, :h, :w]
        return x.reshape(b, n, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H*W, dim) -> (B, H*W, dim), tokens in row-major order."""
        h, w = self.input_resolution
        b, n, c = x.shape
        x = x + self._window_attention(x)

        # tokens are NHWC in memory: a 4D permute to NCHW and back, which OpenVINO's
        # channels-last conv absorbs (a transpose + reshape pair it copied: 54 -> 33 ms)
        x = x.view(b, h, w, c).permute(0, 3, 1, 2)
        x = self.local_conv(x)
        x = x.permute(0, 2, 3, 1).reshape(b, n, c)

        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """A transformer stage: ``depth`` TinyViT blocks, then optional merging.

    Args:
        dim: features per token.
        input_resolution: (H, W) of the stage.
        depth: number of blocks.
        num_heads: attention heads.
        window_size: attention window side.
        mlp_ratio: MLP expansion ratio.
        local_conv_size: kernel size of the blocks' depthwise conv.
        downsample: patch merging applied after the blocks, or None.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        downsample: PatchMerging | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(
                dim,
                input_resolution,
                num_heads,
                window_size,
                mlp_ratio,
                local_conv_size,
            )
            for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim, H, W) -> (B, C_out, H', W') (C_out, H', W' set by downsample)."""
        b, c, h, w = x.shape
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, H*W, dim)
        for block in self.blocks:
            x = block(x)
        x = x.view(b, h, w, c).permute(0, 3, 1, 2)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class TinyViT(nn.Module):
    """TinyViT image encoder with SAM's neck, as used by LiteMedSAM.

    Stage 0 is convolutional (MBConv) at the input resolution; every later
    stage is windowed attention. Each stage but the last ends in a patch
    merging to the next stage's width; those merges halve the resolution,
    except the last one, which keeps it. With the defaults (LiteMedSAM) the
    stages run at 256, 128, 64 and 64 pixels square.

    Args:
        img_size: side of the square input image.
        in_chans: image channels.
        embed_dims: channels of each stage.
        depths: blocks in each stage.
        num_heads: attention heads of each stage (entry 0 unused).
        window_sizes: attention window side of each stage (entry 0 unused).
        mlp_ratio: MLP expansion ratio of the attention blocks.
        mbconv_expand_ratio: expansion ratio of stage 0's MBConv blocks.
        local_conv_size: kernel of the depthwise conv in attention blocks.
        out_chans: channels of the neck's output.
    """

    def __init__(
        self,
        img_size: int = 256,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        num_layers = len(depths)
        if not len(embed_dims) == len(num_heads) == len(window_sizes) == num_layers:
            raise ValueError("embed_dims, depths, num_heads, window_sizes differ in length")
        if num_layers < 2:
            raise ValueError("TinyViT needs at least two stages")
        self.img_size = img_size

        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])

        layers: list[nn.Module] = []
        resolution = img_size
        for i in range(num_layers):
            downsample = None
            stride = 1
            if i < num_layers - 1:
                stride = 2 if i < num_layers - 2 else 1
                downsample = PatchMerging(embed_dims[i], embed_dims[i + 1], stride)
            if i == 0:
                layers.append(ConvLayer(embed_dims[0], depths[0], mbconv_expand_ratio, downsample))
            else:
                layers.append(
                    BasicLayer(
                        embed_dims[i],
                        (resolution, resolution),
                        depths[i],
                        num_heads[i],
                        window_sizes[i],
                        mlp_ratio,
                        local_conv_size,
                        downsample,
                    )
                )
            resolution = (resolution - 1) // stride + 1
        self.layers = nn.ModuleList(layers)
        self.embed_size = resolution

        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, img_size, img_size) -> (B, out_chans, E, E).

        E is ``embed_size`` (64 for LiteMedSAM's 256 input).
        """
        x = self.patch_embed(image)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)


def build_litemedsam_encoder() -> TinyViT:
    """TinyViT in LiteMedSAM's configuration: (B, 3, 256, 256) -> (B, 256, 64, 64)."""
    return TinyViT(
        img_size=256,
        in_chans=3,
        embed_dims=(64, 128, 160, 320),
        depths=(2, 2, 6, 2),
        num_heads=(2, 4, 5, 10),
        window_sizes=(7, 7, 14, 7),
        mlp_ratio=4.0,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        out_chans=256,
    )
