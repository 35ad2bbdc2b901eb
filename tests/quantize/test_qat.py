"""Quantization-aware distillation's ignored scope: the torch encoder's float modules, named as
NNCF names their traced operations."""

from __future__ import annotations

import re

import pytest
import torch

from msam_export.quantize.qat import expose_list_items, float_modules, ignored_patterns, nncf_path
from msam_export.zoo import get_spec


def nncf_operations(encoder: torch.nn.Module, size: int) -> list[str]:
    """Names of the operation nodes of NNCF's graph of ``encoder`` (parameters excluded)."""
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    graph = build_nncf_graph(encoder, torch.zeros(1, 3, size, size))
    return [node.node_name for node in graph.get_all_nodes() if "/" in node.node_name]


def test_nncf_path_joins_list_items_to_their_list():
    encoder = get_spec("litemedsam").build(with_decoder=False).image_encoder
    assert nncf_path(encoder, "layers.0.blocks.1.conv1.c") == "layers.0/blocks.1/conv1/c"
    assert nncf_path(encoder, "neck.1") == "neck/1"  # a Sequential is called: its items are path parts
    assert nncf_path(encoder, "patch_embed.seq.0.c") == "patch_embed/seq/0/c"


def test_exposing_list_items_changes_names_only():
    encoder = get_spec("litemedsam").build(with_decoder=False).image_encoder
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        before, keys = encoder(x), list(encoder.state_dict())
    expose_list_items(encoder)
    with torch.no_grad():
        assert torch.equal(encoder(x), before)
    assert list(encoder.state_dict()) == keys
    assert len(list(encoder.parameters())) == len(dict(encoder.named_parameters()))


@pytest.mark.parametrize(
    ("name", "quantized", "kept_float"),
    [
        ("litemedsam", "layers.1/blocks.0/mlp/fc1/linear/0", "layers.0/blocks.1/conv1/c/conv2d/0"),
        (
            "l0",
            "backbone/stages.3/op_list.0/main/point_conv/conv/conv2d/0",
            "backbone/stages.0/op_list.0/conv/conv2d/0",
        ),
    ],
)
def test_every_float_module_matches_its_own_operations(name, quantized, kept_float):
    """Each ignored pattern names operations of NNCF's graph, every block gets its own path, and
    the operations left to quantize include the attention/MLP layers outside the float scope."""
    spec = get_spec(name)
    encoder = spec.build(with_decoder=False).image_encoder
    modules = float_modules(encoder, spec, [])
    expose_list_items(encoder)
    operations = nncf_operations(encoder, spec.input_size)
    assert len(operations) == len(set(operations))
    patterns = ignored_patterns(encoder, modules)
    for pattern in patterns:
        assert any(re.search(pattern, op) for op in operations), pattern
    quantizable = [op for op in operations if not any(re.search(p, op) for p in patterns)]
    assert quantized in quantizable and kept_float in operations and kept_float not in quantizable


def test_hand_written_layer_norms_stay_float():
    """Traced from PyTorch, LayerNorm2d is mean/sub/pow/add/sqrt; a quantizer on var + eps
    rounds small variances to zero and the embeddings come out infinite."""
    spec = get_spec("litemedsam")
    encoder = spec.build(with_decoder=False).image_encoder
    assert {"neck.1", "neck.3"} <= set(float_modules(encoder, spec, []))
    assert "layers.1.blocks.0.attn.qkv" not in float_modules(encoder, spec, [])
    assert "layers.1.blocks.0.attn.qkv" in float_modules(encoder, spec, ["layers.1/blocks.0/attn"])
