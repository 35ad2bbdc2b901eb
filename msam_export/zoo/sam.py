"""SAM's prompt encoder, two-way transformer and mask decoder.

Module names follow segment-anything so that state dicts load unchanged. Boxes
are the default prompt; points with labels and a previous mask are encoded as
SAM's ONNX interface does (``embed_points``, ``embed_masks``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import MLP, LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Random-Fourier positional encoding of normalised (x, y) coordinates."""

    def __init__(self, num_pos_feats: int = 128) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_pos_feats)))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) coordinates in [0, 1] -> (..., 2 * num_pos_feats)."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """Encoding of every cell centre of an (H, W) grid: (C, H, W)."""
        ones = torch.ones((height, width), dtype=self.positional_encoding_gaussian_matrix.dtype)
        y = (ones.cumsum(dim=0) - 0.5) / height
        x = (ones.cumsum(dim=1) - 0.5) / width
        return self.encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Encodes boxes or points into sparse tokens and a mask (or none) into the dense prompt.

    Args:
        embed_dim: token width (256).
        image_embedding_size: (64, 64).
        input_image_size: (S, S), the frame boxes and points are given in.
        mask_in_chans: hidden channels of the mask branch.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: (1, 256, 64, 64)."""
        return self.pe_layer.grid(*self.image_embedding_size).unsqueeze(0)

    def dense_embedding(self) -> torch.Tensor:
        """The "no mask" dense prompt: (1, 256, 64, 64)."""
        h, w = self.image_embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(N, 4) XYXY boxes in the S-pixel frame -> (N, 2, 256) corner tokens.

        As in SAM: +0.5 (pixel centre), divide x by W and y by H, Fourier
        encode, add the learned top-left / bottom-right corner embeddings.
        """
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        h, w = self.input_image_size
        scale = torch.tensor([w, h], dtype=corners.dtype)
        tokens = self.pe_layer.encode(corners / scale)
        corner_embed = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0)
        return tokens + corner_embed

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, P, 2) XY points in the S-pixel frame and (N, P) float labels -> (N, P, 256) tokens.

        Labels: 1 foreground, 0 background, 2 / 3 a box's top-left / bottom-right corner,
        -1 padding (its position is ignored: the token is the learned "not a point"). As SAM's
        ONNX model: +0.5, divide by the frame, Fourier encode, add the label's embedding. A box
        given as its two corners (labels 2, 3) gives the tokens of ``embed_boxes``.
        """
        h, w = self.input_image_size
        scale = torch.tensor([w, h], dtype=coords.dtype)
        tokens = self.pe_layer.encode((coords + 0.5) / scale)
        labels = labels.unsqueeze(-1).to(tokens.dtype)
        padding = (labels == -1).to(tokens.dtype)
        tokens = tokens * (1 - padding) + self.not_a_point_embed.weight * padding
        for i, embedding in enumerate(self.point_embeddings):
            tokens = tokens + embedding.weight * (labels == i).to(tokens.dtype)
        return tokens

    def embed_masks(self, masks: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
        """(N, 1, 4h, 4w) previous low-res logits and (N,) flags -> (N, 256, h, w) dense prompts:
        the downscaled mask where the flag is 1, the "no mask" embedding where it is 0."""
        flag = has_mask.reshape(-1, 1, 1, 1).to(masks.dtype)
        no_mask = self.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return flag * self.mask_downscaling(masks) + (1 - flag) * no_mask


class Attention(nn.Module):
    """Multi-head attention with an optional downscaled internal width."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k and v (B or 1, Nk, C) -> (B, Nq, C). Plain attention."""
        q = self._split(self.q_proj(q))
        k = self._split(self.k_proj(k))
        v = self._split(self.v_proj(v))
        attn = q @ k.permute(0, 1, 3, 2) / math.sqrt(q.shape[-1])
        out = torch.softmax(attn, dim=-1) @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def _heads(self, linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """A projection's weight as (heads, d, C) and bias as (heads, d, 1)."""
        h = self.num_heads
        return linear.weight.reshape(h, -1, linear.weight.shape[1]), linear.bias.reshape(h, -1, 1)

    def tokens_to_image(self, tokens: torch.Tensor, image_k: torch.Tensor, image_v: torch.Tensor) -> torch.Tensor:
        """Prompt tokens attend to the image: tokens (N, T, C), image_k and image_v
        (N or 1, HW, C) -> (N, T, C).

        A batch-1 (shared) image is projected once (``forward``). A per-prompt
        image is never projected: the k and v projections are applied on the token side
        (``q·(W_k x + b_k) = (W_kᵀ q)·x + q·b_k``; softmax rows sum to one, so
        ``A (W_v x + b_v) = W_v (A x) + b_v``). Per prompt this costs T·HW·C
        multiply-adds instead of HW·C·C/2.
        """
        n, t, _ = tokens.shape
        h = self.num_heads
        if image_k.shape[0] == 1:  # a shared image: project it once, as in ``forward``
            return self.forward(tokens, image_k, image_v)
        q = self._split(self.q_proj(tokens))  # (N, h, T, d)
        wk, bk = self._heads(self.k_proj)
        wv, bv = self._heads(self.v_proj)
        q_in = (q @ wk).reshape(n, h * t, -1)  # (N, h*T, C)
        scores = (q_in @ image_k.transpose(1, 2)).reshape(n, h, t, -1) + q @ bk  # (N, h, T, HW)
        attn = torch.softmax(scores / math.sqrt(q.shape[-1]), dim=-1)
        mixed = (attn.reshape(n, h * t, -1) @ image_v).reshape(n, h, t, -1)  # (N, h, T, C)
        out = mixed @ wv.transpose(1, 2) + bv.transpose(1, 2)  # (N, h, T, d)
        return self.out_proj(out.transpose(1, 2).reshape(n, t, -1))

    def image_to_tokens(self, image_q: torch.Tensor, tokens_k: torch.Tensor, tokens_v: torch.Tensor) -> torch.Tensor:
        """The image attends to prompt tokens: image_q (N or 1, HW, C), tokens (N, T, C)
        -> (N, HW, C).

        A batch-1 (shared) image is projected once; a per-prompt image is not
        projected at all, the q projection moving to the token side instead. The
        output projection is folded into the values (``Σ_h A_h (v_h W_o,hᵀ)``), so
        the (N, HW, C) result comes from one (HW × h·T) by (h·T × C) product. The
        scores stay (N, h, T, HW), the softmax running over T across contiguous
        pixels: OpenVINO's softmax over a last axis of 7 was about 3 ms per prompt.
        """
        n, t, _ = tokens_k.shape
        h = self.num_heads
        k = self._split(self.k_proj(tokens_k))  # (N, h, T, d)
        v = self._split(self.v_proj(tokens_v))
        if image_q.shape[0] == 1:
            q = self._split(self.q_proj(image_q))  # (1, h, HW, d)
            scores = k @ q.transpose(2, 3)  # (N, h, T, HW)
        else:
            wq, bq = self._heads(self.q_proj)
            k_in = (k @ wq).reshape(n, h * t, -1)  # (N, h*T, C)
            scores = (k_in @ image_q.transpose(1, 2)).reshape(n, h, t, -1) + k @ bq  # (N, h, T, HW)
        attn = torch.softmax(scores / math.sqrt(k.shape[-1]), dim=2)
        wo = self.out_proj.weight.reshape(-1, h, k.shape[-1]).permute(1, 2, 0)  # (h, d, C)
        # each head's weights sum to one over T, so the output bias can ride on the values
        # (b/h per head): a bias added after this product broke OpenVINO's CPU compile of
        # the decoder with a dynamic box dimension ("data.size() == OC" in its post-ops)
        v_out = (v @ wo + self.out_proj.bias / h).reshape(n, h * t, -1)  # (N, h*T, C)
        return attn.reshape(n, h * t, -1).transpose(1, 2) @ v_out


class MLPBlock(nn.Module):
    """lin2(relu(lin1(x)))."""

    def __init__(self, embedding_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(torch.relu(self.lin1(x)))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image, MLP, image->token (SAM)."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        downsample_rate: int,
        skip_first_layer_pe: bool,
        norm_eps: float,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim, eps=norm_eps)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim, eps=norm_eps)
        self.mlp = MLPBlock(embedding_dim, mlp_dim)
        self.norm3 = nn.LayerNorm(embedding_dim, eps=norm_eps)
        self.norm4 = nn.LayerNorm(embedding_dim, eps=norm_eps)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (N, T, C), keys (N or 1, HW, C) -> updated (queries, keys (N, HW, C))."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image.tokens_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token.image_to_tokens(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """SAM's two-way transformer between prompt tokens and image embedding.

    Args:
        depth: number of two-way blocks (2).
        embedding_dim: C (256).
        num_heads: 8.
        mlp_dim: 2048.
        norm_eps: LayerNorm eps (1e-6 in MedficientSAM, 1e-5 in LiteMedSAM).
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = 2,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate, i == 0, norm_eps)
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim, eps=norm_eps)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding and image_pe (1, C, H, W), point_embedding (N, T, C)
        -> queries (N, T, C), keys (N, HW, C). The image side broadcasts over the
        N prompts until the first block updates it per prompt."""
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attn_out = self.final_attn_token_to_image.tokens_to_image(queries + point_embedding, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn_out), keys


class MaskDecoder(nn.Module):
    """Predicts low-resolution mask logits and IoU scores from prompt tokens.

    Args:
        transformer_dim: C (256).
        transformer: the two-way transformer.
        num_multimask_outputs: 3 (plus one single-mask output).
        iou_head_depth: 3.
        iou_head_hidden_dim: 256.
    """

    def __init__(
        self,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-mask prediction (``multimask_output=False``).

        Args:
            image_embeddings: (1, 256, 64, 64), shared by all N prompts.
            image_pe: (1, 256, 64, 64).
            sparse_prompt_embeddings: (N, T, 256).
            dense_prompt_embeddings: (1, 256, 64, 64), or (N, 256, 64, 64) per prompt (mask prompts).

        Returns:
            low-res mask logits (N, 1, 256, 256) and IoU predictions (N, 1).
        """
        n = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(n, -1, -1), sparse_prompt_embeddings], dim=1)
        # The image side stays at batch 1 until the first image->token attention makes
        # it prompt-dependent: the first block's key/value/query projections of the
        # image run once per call, not once per box (broadcasting does the rest).
        src = image_embeddings + dense_prompt_embeddings
        h, w = src.shape[-2:]
        hs, keys = self.transformer(src, image_pe, tokens)
        hyper_in = self.output_hypernetworks_mlps[0](hs[:, 1, :])  # (N, 32)
        masks = self.upscale_masks(keys, hyper_in, h, w)
        iou_pred = self.iou_prediction_head(hs[:, 0, :])[:, :1]
        return masks, iou_pred

    def upscale_masks(self, keys: torch.Tensor, hyper_in: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """keys (N, h*w, C) channels-last, hyper_in (N, C/8) -> mask logits (N, 1, 4h, 4w).

        ``output_upscaling`` computed pixel-wise: a kernel-2 stride-2 transposed
        convolution is one matrix product per pixel (each input pixel gives its 2x2
        output pixels), so the whole chain runs on channels-last (pixels, channels)
        matrices and only the final one-channel mask is rearranged into an image.
        In NCHW, OpenVINO spent about a quarter of the decoder's time at 8 boxes
        transposing and reordering the (N, 32, 256, 256) map. Same sums as the NCHW modules.
        The LayerNorm runs on (pixels, channels) rows: on 4D rows OpenVINO split it into a
        mean, a subtraction and an RMS norm instead of one MVN.
        """
        n = keys.shape[0]
        up1, norm, gelu1, up2, gelu2 = self.output_upscaling
        x = _subpixel_product(keys, up1)  # (N, h*w, 4, C/4)
        rows = nn.functional.layer_norm(x.reshape(-1, x.shape[-1]), norm.weight.shape, norm.weight, norm.bias, norm.eps)
        x = gelu1(rows.reshape(x.shape))
        x = gelu2(_subpixel_product(x.reshape(n, -1, up2.in_channels), up2))  # (N, h*w*4, 4, C/8)
        masks = x.reshape(n, -1, up2.out_channels) @ hyper_in[:, :, None]  # (N, h*w*16, 1)
        # (y, x, i1, j1, i2, j2) -> output row 4y + 2*i1 + i2, column 4x + 2*j1 + j2
        masks = masks.reshape(n, h, w, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
        return masks.reshape(n, 1, 4 * h, 4 * w)


def _subpixel_product(x: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
    """A 2x2 stride-2 transposed convolution on channels-last pixels:
    x (N, P, C_in) -> (N, P, 4, C_out), the four sub-pixels in (row, column) order.
    One (N*P, C_in) product with the bias inside, which traces to a Gemm that the
    runtimes run with the bias (and the following GELU) fused."""
    c_in, c_out, kh, kw = conv.weight.shape
    weight = conv.weight.permute(2, 3, 1, 0).reshape(kh * kw * c_out, c_in)
    n, p, _ = x.shape
    out = nn.functional.linear(x.reshape(n * p, c_in), weight, conv.bias.repeat(kh * kw))
    return out.reshape(n, p, kh * kw, c_out)
