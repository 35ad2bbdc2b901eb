"""Quantization-aware distillation's ignored scope: the torch encoder's float modules, named as
NNCF names their traced operations."""

from __future__ import annotations

import re

import pytest
import torch

from msam_export.quantize.qat import (
    evaluation_steps,
    expose_list_items,
    float_modules,
    ignored_patterns,
    nncf_path,
    seed_gptq_codes,
    start_gelu_ranges_at_minimum,
    weight_quantizers,
)
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


class AttentionAndMlp(torch.nn.Module):
    """A TinyViT attention and a GELU MLP: every kind of layer the torch recipe quantizes."""

    def __init__(self) -> None:
        super().__init__()
        from msam_export.zoo.tinyvit import Attention

        self.attn = Attention(32, 8, 4, (4, 4))
        self.fc1 = torch.nn.Linear(32, 64)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.fc2(self.act(self.fc1(x)))


@pytest.fixture(scope="module")
def tiny_quantized() -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """(NNCF-quantized copy, FP32 model, calibration inputs) of ``AttentionAndMlp``."""
    import copy

    import nncf

    torch.manual_seed(0)
    fp32 = AttentionAndMlp().eval()
    fp32.attn.expose_weights()
    inputs = torch.randn(8, 16, 32)
    quantized = nncf.quantize(
        copy.deepcopy(fp32),
        nncf.Dataset([inputs[i : i + 1] for i in range(len(inputs))]),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(inputs),
        advanced_parameters=nncf.AdvancedQuantizationParameters(disable_bias_correction=True),
    )
    return quantized, fp32, inputs


def test_every_linear_weight_has_its_quantizer_found(tiny_quantized):
    quantized, _, _ = tiny_quantized
    assert set(weight_quantizers(quantized)) == {"attn.q", "attn.k", "attn.v", "attn.proj", "fc1", "fc2"}


def test_gelu_quantizers_start_at_gelus_minimum(tiny_quantized):
    import copy

    from nncf.torch.function_hook.wrapper import get_hook_storage

    from msam_export.quantize.graph import GELU_MINIMUM

    quantized, _, inputs = tiny_quantized
    model = copy.deepcopy(quantized)
    assert start_gelu_ranges_at_minimum(model) == 1
    (gelu,) = [
        q for key, hooks in get_hook_storage(model).post_hooks.items() if "/gelu/" in key for q in hooks.values()
    ]
    assert float(gelu.input_low.detach()) == pytest.approx(GELU_MINIMUM)
    with torch.no_grad():
        assert torch.allclose(model(inputs[:1]), quantized(inputs[:1]), atol=0.1)  # the same ranges, a finer step


def test_seeded_weights_are_gptq_codes_with_a_lower_output_error(tiny_quantized):
    """Each seeded weight lies on its quantizer's grid (in range), and its output error on the
    calibration inputs is at most nearest rounding's."""
    import copy

    quantized, fp32, inputs = tiny_quantized
    model = copy.deepcopy(quantized)
    assert seed_gptq_codes(model, fp32, inputs) == 6
    inputs_of: dict[str, torch.Tensor] = {}
    modules = dict(fp32.named_modules())

    def keep_input(name: str):
        def hook(module, args, output) -> None:
            inputs_of[name] = args[0]

        return hook

    hooks = [modules[name].register_forward_hook(keep_input(name)) for name in weight_quantizers(model)]
    with torch.no_grad():
        fp32(inputs)
    for hook in hooks:
        hook.remove()
    seeded = dict(model.named_modules())
    for name, quantizer in weight_quantizers(model).items():
        step = quantizer.scale.detach().abs() / quantizer.level_high
        codes = seeded[name].weight.detach() / step
        assert torch.allclose(codes, codes.round(), atol=1e-4)
        assert quantizer.level_low <= codes.round().min() and codes.round().max() <= quantizer.level_high
        weight = modules[name].weight.detach()
        x = inputs_of[name].reshape(-1, weight.shape[1])
        nearest = (weight / step).round().clamp(quantizer.level_low, quantizer.level_high) * step
        gptq_error = ((weight - codes.round() * step) @ x.T).pow(2).sum()
        assert gptq_error <= ((weight - nearest) @ x.T).pow(2).sum() * 1.0001


@pytest.mark.parametrize(
    ("steps", "every", "expected"),
    [(100, 25, [0, 25, 50, 75, 100]), (10, 4, [0, 4, 8, 10]), (2, 2, [0, 2]), (10, 0, [10]), (3, 10, [0, 3])],
)
def test_the_student_is_scored_from_step_0_and_at_the_end(steps, every, expected):
    assert evaluation_steps(steps, every) == expected
