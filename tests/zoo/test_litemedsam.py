"""LiteMedSAM with its real weights reproduces the challenge baseline's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import golden_file

from msam_export.checkpoints import default_checkpoint_path, load_checkpoint

ATOL = 1e-4


@pytest.fixture(scope="module")
def litemedsam():
    return load_checkpoint(default_checkpoint_path())


def test_detected_as_litemedsam(litemedsam):
    assert litemedsam.spec.name == "litemedsam"
    assert litemedsam.provenance.format == "raw"
    assert litemedsam.model.has_decoder
    assert sum(p.numel() for p in litemedsam.model.parameters()) == 9_791_300


def test_golden_outputs(litemedsam):
    golden = np.load(golden_file("litemedsam.golden.npz"))
    boxes = torch.from_numpy(golden["boxes_256"])
    with torch.no_grad():
        embeddings = litemedsam.model.encode(torch.from_numpy(golden["image"]))
        logits, iou = litemedsam.model.decode(embeddings, boxes)
    np.testing.assert_allclose(embeddings.numpy(), golden["image_embeddings"], rtol=0, atol=ATOL)
    for i in range(len(boxes)):
        np.testing.assert_allclose(logits[i : i + 1].numpy(), golden[f"box{i}_lowres_logits"], rtol=0, atol=ATOL)
        np.testing.assert_allclose(iou[i : i + 1].numpy(), golden[f"box{i}_iou"], rtol=0, atol=ATOL)
