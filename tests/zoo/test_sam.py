"""The re-associated decoder paths against the plain (segment-anything) formulation,
on random weights and inputs: the golden tests check one input, these check the algebra."""

from __future__ import annotations

import math

import pytest
import torch

from msam_export.zoo.sam import Attention, MaskDecoder, TwoWayTransformer

torch.manual_seed(0)


@pytest.fixture(scope="module")
def decoder() -> MaskDecoder:
    model = MaskDecoder(256, TwoWayTransformer(depth=2, embedding_dim=256, num_heads=8, mlp_dim=2048)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model


def plain_attention(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """segment-anything's Attention.forward, batch broadcast made explicit."""
    n = max(q.shape[0], k.shape[0])
    q, k, v = (x.expand(n, -1, -1) for x in (q, k, v))
    qh = attn._split(attn.q_proj(q))
    kh = attn._split(attn.k_proj(k))
    vh = attn._split(attn.v_proj(v))
    weights = torch.softmax(qh @ kh.transpose(2, 3) / math.sqrt(qh.shape[-1]), dim=-1)
    out = (weights @ vh).transpose(1, 2).reshape(n, q.shape[1], -1)
    return attn.out_proj(out)


@pytest.mark.parametrize("image_batch", [1, 3])
def test_attention_folds_match_plain_attention(decoder: MaskDecoder, image_batch: int) -> None:
    attn = decoder.transformer.layers[1].cross_attn_token_to_image
    tokens = torch.randn(3, 7, 256)
    image = torch.randn(image_batch, 64, 256)
    with torch.no_grad():
        to_image = attn.tokens_to_image(tokens, image, image)
        to_tokens = attn.image_to_tokens(image, tokens, tokens)
        torch.testing.assert_close(to_image, plain_attention(attn, tokens, image, image), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(to_tokens, plain_attention(attn, image, tokens, tokens), atol=1e-5, rtol=1e-4)


def test_pixelwise_upscaling_matches_the_conv_modules(decoder: MaskDecoder) -> None:
    n, h, w = 3, 8, 6
    keys = torch.randn(n, h * w, 256)
    hyper_in = torch.randn(n, 32)
    with torch.no_grad():
        upscaled = decoder.output_upscaling(keys.transpose(1, 2).reshape(n, 256, h, w))  # (N, 32, 4h, 4w)
        expected = (upscaled * hyper_in[:, :, None, None]).sum(dim=1, keepdim=True)
        got = decoder.upscale_masks(keys, hyper_in, h, w)
    assert got.shape == (n, 1, 4 * h, 4 * w)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
