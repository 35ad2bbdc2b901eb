"""Clicks and a previous mask through ``Model.segment``: every backend against the PyTorch model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sample_case

from msam_export.checkpoints import default_checkpoint_path
from msam_export.data import load_case
from msam_export.errors import MsamError
from msam_export.metrics import agreement_dice
from msam_export.runtime import open_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(litemedsam_full_exports):
    return {
        "pytorch": open_model(default_checkpoint_path()),
        "onnx": open_model(litemedsam_full_exports["onnx"].path),
        "openvino": open_model(litemedsam_full_exports["openvino"].path),
    }


def prompts_of(case):
    """Two boxes' worth of prompts on a case: clicks inside each box, a background click outside."""
    boxes = case.boxes[:2].astype(np.float64)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    points = np.stack([centre, centre + 3, boxes[:, :2] - 4], axis=1)
    labels = np.array([[1.0, 1.0, 0.0]] * len(boxes))
    return boxes, points, labels


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
@pytest.mark.parametrize("prompt", ["clicks", "box+clicks", "clicks+mask"])
def test_clicks_and_masks_segment_like_pytorch(models, kind, prompt):
    case = load_case(sample_case("2DBox_Microscope_DSB2018-stardist.npz"))
    boxes, points, labels = prompts_of(case)
    reference, candidate = models["pytorch"], models[kind]
    kwargs = {"points": points, "labels": labels}
    if prompt == "box+clicks":
        kwargs["boxes"] = boxes
    if prompt == "clicks+mask":
        previous = reference.segment(case.image, boxes).logits
        kwargs["mask"] = previous
    ref, cand = reference.segment(case.image, **kwargs), candidate.segment(case.image, **kwargs)
    assert ref.logits.shape == cand.logits.shape == (2, 1, 256, 256)
    assert np.abs(ref.logits - cand.logits).max() < 1e-3  # end to end, the encoder's f32 rounding included
    assert min(agreement_dice(a, b) for a, b in zip(ref.box_masks, cand.box_masks, strict=True)) >= 0.999
    # the prompt changed the result: it is not the box path in disguise
    by_box = candidate.segment(case.image, boxes)
    assert not np.array_equal(by_box.logits, cand.logits)


def test_one_prompt_given_as_plain_clicks(models):
    case = load_case(sample_case("2DBox_US_HC18-000.npz"))
    box = case.boxes[0]
    click = [[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]]
    single = models["onnx"].segment(case.image, boxes=case.boxes[:1], points=click, labels=[1])
    batched = models["onnx"].segment(case.image, boxes=case.boxes[:1], points=[click], labels=[[1]])
    assert np.array_equal(single.segs, batched.segs) and single.segs.max() == 1


def test_a_box_artifact_refuses_clicks_in_one_line(litemedsam_exports):
    model = open_model(litemedsam_exports["openvino"])
    case = load_case(sample_case("2DBox_US_HC18-000.npz"))
    with pytest.raises(MsamError, match="takes boxes only; .*--prompts full"):
        model.segment(case.image, case.boxes, points=[[[10.0, 10.0]]], labels=[[1.0]])


def test_bad_prompts_are_named(models):
    case = load_case(sample_case("2DBox_US_HC18-000.npz"))
    with pytest.raises(ValueError, match=r"labels must be \(N, P\)"):
        models["onnx"].segment(case.image, points=[[[1.0, 2.0], [3.0, 4.0]]], labels=[[1.0]])
    with pytest.raises(ValueError, match="point labels must be"):
        models["onnx"].segment(case.image, points=[[[1.0, 2.0]]], labels=[[7.0]])
    with pytest.raises(ValueError, match="needs boxes or points"):
        models["onnx"].segment(case.image)
