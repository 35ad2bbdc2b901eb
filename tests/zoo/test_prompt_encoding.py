"""The full prompt interface (points, labels, previous mask) against a plain transcription of
segment-anything's PromptEncoder.forward and MaskDecoder.predict_masks, in float64 on
LiteMedSAM's real weights: clicks only, box + clicks, clicks + previous mask."""

from __future__ import annotations

import copy

import pytest
import torch
from test_sam import plain_attention

from msam_export.checkpoints import default_checkpoint_path, load_checkpoint
from msam_export.zoo import MedSam


@pytest.fixture(scope="module")
def model() -> MedSam:
    return copy.deepcopy(load_checkpoint(default_checkpoint_path()).model).eval().double()


def original_prompts(model: MedSam, points, labels, boxes, masks) -> tuple[torch.Tensor, torch.Tensor]:
    """segment-anything's PromptEncoder.forward: sparse (N,T,256), dense (N or 1,256,64,64)."""
    pe = model.prompt_encoder
    size = torch.tensor(pe.input_image_size[::-1], dtype=torch.float64)
    sparse = []
    if points is not None:
        points, labels = points + 0.5, labels.clone()
        if boxes is None:  # pad=True: one (0, 0) point of label -1
            points = torch.cat([points, torch.zeros(points.shape[0], 1, 2, dtype=points.dtype)], dim=1)
            labels = torch.cat([labels, -torch.ones(labels.shape[0], 1, dtype=labels.dtype)], dim=1)
        emb = pe.pe_layer.encode(points / size)
        emb[labels == -1] = 0.0
        emb[labels == -1] += pe.not_a_point_embed.weight
        emb[labels == 0] += pe.point_embeddings[0].weight
        emb[labels == 1] += pe.point_embeddings[1].weight
        sparse.append(emb)
    if boxes is not None:
        corners = pe.pe_layer.encode((boxes + 0.5).reshape(-1, 2, 2) / size)
        corners[:, 0, :] += pe.point_embeddings[2].weight
        corners[:, 1, :] += pe.point_embeddings[3].weight
        sparse.append(corners)
    if masks is not None:
        dense = pe.mask_downscaling(masks)
    else:
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *pe.image_embedding_size)
    return torch.cat(sparse, dim=1), dense


def original_decoder(model: MedSam, image_embeddings, sparse, dense) -> tuple[torch.Tensor, torch.Tensor]:
    """MaskDecoder.predict_masks with TwoWayTransformer.forward, single-mask output."""
    md, pe = model.mask_decoder, model.prompt_encoder
    n = sparse.shape[0]
    output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0).unsqueeze(0).expand(n, -1, -1)
    tokens = torch.cat([output_tokens, sparse], dim=1)
    src = torch.repeat_interleave(image_embeddings, n, dim=0) + dense
    pos = torch.repeat_interleave(pe.dense_pe(), n, dim=0)
    b, c, h, w = src.shape
    keys, key_pe, queries = src.flatten(2).permute(0, 2, 1), pos.flatten(2).permute(0, 2, 1), tokens
    for layer in md.transformer.layers:
        if layer.skip_first_layer_pe:
            queries = plain_attention(layer.self_attn, queries, queries, queries)
        else:
            q = queries + tokens
            queries = queries + plain_attention(layer.self_attn, q, q, queries)
        queries = layer.norm1(queries)
        q, k = queries + tokens, keys + key_pe
        queries = layer.norm2(queries + plain_attention(layer.cross_attn_token_to_image, q, k, keys))
        queries = layer.norm3(queries + layer.mlp(queries))
        q, k = queries + tokens, keys + key_pe
        keys = layer.norm4(keys + plain_attention(layer.cross_attn_image_to_token, k, q, queries))
    final = md.transformer.final_attn_token_to_image
    queries = md.transformer.norm_final_attn(queries + plain_attention(final, queries + tokens, keys + key_pe, keys))
    upscaled = md.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
    hyper_in = torch.stack([mlp(queries[:, 1 + i, :]) for i, mlp in enumerate(md.output_hypernetworks_mlps)], dim=1)
    masks = (hyper_in @ upscaled.flatten(2)).reshape(b, -1, *upscaled.shape[-2:])
    return masks[:, :1], md.iou_prediction_head(queries[:, 0, :])[:, :1]


def interface_inputs(points, labels, boxes, masks, n: int):
    """The ONNX-interface tensors for the same prompts: points then box corners (labels 2, 3);
    no box: one padding point; no mask: zeros with has_mask_input 0."""
    coords, codes = [], []
    if points is not None:
        coords.append(points)
        codes.append(labels)
    if boxes is not None:
        coords.append(boxes.reshape(-1, 2, 2))
        codes.append(torch.tensor([[2.0, 3.0]], dtype=torch.float64).expand(n, -1))
    else:
        coords.append(torch.zeros(n, 1, 2, dtype=torch.float64))
        codes.append(-torch.ones(n, 1, dtype=torch.float64))
    mask_input = masks if masks is not None else torch.zeros(n, 1, 256, 256, dtype=torch.float64)
    has_mask = torch.full((n,), 1.0 if masks is not None else 0.0, dtype=torch.float64)
    return torch.cat(coords, dim=1), torch.cat(codes, dim=1), mask_input, has_mask


PROMPTS = {
    "clicks only": (True, False, False),
    "box + clicks": (True, True, False),
    "clicks + previous mask": (True, False, True),
    "box + clicks + previous mask": (True, True, True),
    "box only": (False, True, False),
}


@pytest.mark.parametrize("name", PROMPTS)
def test_full_interface_matches_the_original_modules(model: MedSam, name: str) -> None:
    use_points, use_box, use_mask = PROMPTS[name]
    g = torch.Generator().manual_seed(1)
    n = 3
    embeddings = torch.randn(1, 256, 64, 64, generator=g, dtype=torch.float64)
    points = torch.rand(n, 3, 2, generator=g, dtype=torch.float64) * 255 if use_points else None
    labels = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    boxes = torch.tensor([[20.0, 30, 150, 160], [60, 10, 250, 120], [0, 0, 255, 255]], dtype=torch.float64)
    masks = torch.randn(n, 1, 256, 256, generator=g, dtype=torch.float64) * 8 if use_mask else None
    boxes = boxes if use_box else None
    with torch.no_grad():
        sparse, dense = original_prompts(model, points, labels if use_points else None, boxes, masks)
        expected = original_decoder(model, embeddings, sparse, dense)
        got = model.decode_prompts(embeddings, *interface_inputs(points, labels, boxes, masks, n))
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_a_box_as_two_corners_is_the_box_decoder(model: MedSam) -> None:
    boxes = torch.tensor([[20.0, 30, 150, 160], [60, 10, 250, 120]], dtype=torch.float64)
    embeddings = torch.randn(1, 256, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        by_box = model.decode(embeddings, boxes)
        by_points = model.decode_prompts(embeddings, *interface_inputs(None, None, boxes, None, 2))
    for a, b in zip(by_box, by_points, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
