"""MedficientSAM L0/L1/L2: our modules reproduce the original code's golden outputs.

Weights come from make_weights.py (the generator's fill rule) written in each
checkpoint format and loaded through ``load_checkpoint``. L0's manifest and
golden outputs are carried in tests/fixtures; L1/L2 come from ../shared.
"""

from __future__ import annotations

import json

import make_weights
import numpy as np
import pytest
import torch
from conftest import golden_file, write_checkpoint

from msam_export.checkpoints import DISTILLED, FINETUNED, RAW, load_checkpoint

EMBED_ATOL = 5e-5
LOGIT_ATOL = 2e-5
PARAMS = {"l0": 34_792_784, "l1": 47_650_128, "l2": 61_328_592}
ENCODER_PARAMS = {"l0": 30_728_224, "l1": 43_585_568, "l2": 57_264_032}


@pytest.fixture(scope="module", params=["l0", "l1", "l2"])
def variant_files(request, tmp_path_factory):
    variant = request.param
    manifest = golden_file(f"medficientsam_{variant}.manifest.json")
    golden = np.load(golden_file(f"medficientsam_{variant}.golden.npz"))
    sd = make_weights.make_state_dict(manifest)
    folder = tmp_path_factory.mktemp(variant)
    paths = {}
    for layout in (RAW, FINETUNED, DISTILLED):
        paths[layout] = folder / f"{variant}-{layout}.ckpt"
        write_checkpoint(sd, paths[layout], layout)
    return variant, paths, golden, json.loads(manifest.read_text())


@pytest.mark.parametrize("layout", [RAW, FINETUNED, DISTILLED])
def test_golden_outputs(variant_files, layout):
    variant, paths, golden, manifest = variant_files
    loaded = load_checkpoint(paths[layout])
    assert loaded.spec.name == variant
    assert loaded.provenance.format == layout
    assert loaded.model.has_decoder == (layout != DISTILLED)
    with torch.no_grad():
        embeddings = loaded.model.encode(make_weights.golden_image())
    np.testing.assert_allclose(embeddings.numpy(), golden["image_embeddings"], rtol=0, atol=EMBED_ATOL)
    if layout == DISTILLED:
        return
    boxes = make_weights.boxes_for_python_path()
    with torch.no_grad():
        sparse = loaded.model.prompt_encoder.embed_boxes(boxes)
        logits, iou = loaded.model.decode(torch.from_numpy(golden["image_embeddings"]), boxes)
    for i in range(len(boxes)):
        np.testing.assert_allclose(sparse[i : i + 1].numpy(), golden[f"box{i}_sparse_python"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(logits[i : i + 1].numpy(), golden[f"box{i}_lowres_logits"], rtol=0, atol=LOGIT_ATOL)
        np.testing.assert_allclose(iou[i : i + 1].numpy(), golden[f"box{i}_iou"], rtol=0, atol=LOGIT_ATOL)


def test_state_dict_layout_and_parameter_counts(variant_files):
    variant, paths, _, manifest = variant_files
    model = load_checkpoint(paths[RAW]).model
    expected = [(e["name"], e["shape"]) for e in manifest["state_dict"]]
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sorted(ours.items()) == sorted(expected)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[variant]
    assert sum(p.numel() for p in model.image_encoder.parameters()) == ENCODER_PARAMS[variant]
