"""The predictor on real cases: propagation rule, encoder calls, backends agree."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sample_case

from msam_export.contract import transform_boxes
from msam_export.data import load_case
from msam_export.metrics import agreement_dice
from msam_export.runtime import OnnxBackend, Predictor, TorchBackend, open_model

pytestmark = pytest.mark.slow


class CountingBackend:
    """Delegates to a real backend and counts encoder calls per input."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.precision = inner.precision
        self.encoded: list[bytes] = []

    def encode(self, image):
        self.encoded.append(image.tobytes())
        return self.inner.encode(image)

    def decode(self, embeddings, boxes):
        return self.inner.decode(embeddings, boxes)


@pytest.fixture(scope="module")
def onnx_model(litemedsam_exports):
    return open_model(litemedsam_exports["onnx"])


def reference_3d(predictor: Predictor, volume: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """docs/PIPELINE.md's walk written plainly: one box at a time, one slice at a time, each
    slice segmented as a 2D image with the box its neighbour's mask gives under the same rule."""
    size = predictor.spec.input_size
    segs = np.zeros(volume.shape, dtype=np.uint16)
    for i, box in enumerate(boxes):
        x0, y0, z0, x1, y1, z1 = (int(v) for v in box)
        z_mid = (z0 + z1) // 2
        given = transform_boxes(np.array([[x0, y0, x1, y1]], dtype=np.float64), volume.shape[1:], size)[0]
        masks = {}
        order = list(range(z_mid, z1 + 1)) + list(range(z_mid - 1, z0 - 1, -1))
        for z in order:
            if z == z_mid:
                prompt = given
            else:
                neighbour = masks[z - 1] if z > z_mid else masks[z + 1]
                found = predictor.propagation.next_box(neighbour, i + 1, size, predictor.spec.resize)
                prompt = given if found is None else found
            embedding, resized_hw = predictor._encode(volume[z])
            masks[z] = predictor._decode(embedding, resized_hw, volume.shape[1:], prompt[None])[0]
        for z, mask in masks.items():
            segs[z][mask] = i + 1
    return segs


@pytest.mark.parametrize("rule", ["margin:3", "tight"])
def test_3d_matches_plain_rule_and_encodes_each_slice_once(onnx_model, rule):
    case = load_case(sample_case("3DBox_MR_TotalSegExample.npz"))
    boxes = case.boxes[[9, 21, 20]]  # small organs with overlapping z ranges (5-7 slices each)
    counting = CountingBackend(onnx_model.backend)
    result = Predictor(counting, onnx_model.spec, rule).segment_3d(case.image, boxes)
    slices = set()
    for box in boxes:
        slices |= set(range(int(box[2]), int(box[5]) + 1))
    assert result.timings.encoder_calls == len(slices) == len(counting.encoded)
    assert len(set(counting.encoded)) == len(counting.encoded)  # no slice encoded twice
    assert result.timings.decoded_boxes == sum(int(b[5] - b[2]) + 1 for b in boxes)
    expected = reference_3d(Predictor(onnx_model.backend, onnx_model.spec, rule), case.image, boxes)
    np.testing.assert_array_equal(result.segs, expected)
    assert [m.shape[0] for m in result.box_masks] == [int(b[5] - b[2]) + 1 for b in boxes]


def test_3d_many_boxes_one_encoder_call_per_slice(onnx_model):
    case = load_case(sample_case("3DBox_MR_TotalSegExample.npz"))
    counting = CountingBackend(onnx_model.backend)
    result = Predictor(counting, onnx_model.spec).segment(case)
    covered = set()
    for box in case.boxes:
        covered |= set(range(int(box[2]), int(box[5]) + 1))
    assert len(case.boxes) == 22
    assert result.timings.encoder_calls == len(covered) == len(set(counting.encoded))
    assert set(np.unique(result.segs)) <= set(range(len(case.boxes) + 1))


def test_2d_one_encoder_call_batched_decoder(onnx_model):
    case = load_case(sample_case("2DBox_Microscope_DSB2018-stardist.npz"))
    result = Predictor(onnx_model.backend, onnx_model.spec).segment(case)
    assert result.timings.encoder_calls == 1
    assert result.timings.decoded_boxes == 125 and result.timings.decoder_calls == 4  # chunks of 32
    assert result.segs.shape == case.image.shape[:2] and result.segs.dtype == np.uint16
    assert len(np.unique(result.segs)) > 100


def test_backends_agree_on_a_real_case(onnx_model, litemedsam_exports):
    from msam_export.checkpoints import default_checkpoint_path, load_checkpoint

    case = load_case(sample_case("2DBox_US_HC18-000.npz"))
    loaded = load_checkpoint(default_checkpoint_path())
    torch_result = Predictor(TorchBackend(loaded.model), loaded.spec).segment(case)
    onnx_result = Predictor(
        OnnxBackend(litemedsam_exports["onnx"] / "encoder.onnx", litemedsam_exports["onnx"] / "decoder.onnx"),
        loaded.spec,
    ).segment(case)
    ov = open_model(litemedsam_exports["openvino"])
    ov_result = Predictor(ov.backend, ov.spec).segment(case)
    assert ov.backend.actual_precision() == "f32"
    for other in (onnx_result, ov_result):
        assert agreement_dice(torch_result.box_masks[0], other.box_masks[0]) > 0.999
