"""``--prompts full``: decoders with SAM's ONNX interface (points, labels, a previous mask) in ONNX
Runtime and OpenVINO reproduce the PyTorch model for clicks, box + clicks and clicks + mask; box
exports keep their interface; MedficientSAM's golden weights run the same checks."""

from __future__ import annotations

import make_weights
import numpy as np
import pytest
from conftest import golden_file, sample_case, write_checkpoint
from test_export import ATOL, assert_golden, backends

from msam_export.artifact import DECODER_INPUTS, PROMPT_DECODER_INPUTS
from msam_export.checkpoints import RAW, default_checkpoint_path
from msam_export.contract import prompt_arrays
from msam_export.errors import MsamError
from msam_export.export import pipeline
from msam_export.runtime import open_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_exports(litemedsam_full_exports):
    return litemedsam_full_exports


def input_names(record: dict) -> tuple[str, ...]:
    return tuple(i["name"] for i in record["graphs"]["decoder"]["inputs"])


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_full_decoder_matches_pytorch_for_every_prompt_kind(full_exports, kind):
    record = full_exports[kind].record
    assert record["options"]["prompts"] == "full" and input_names(record) == PROMPT_DECODER_INPUTS
    parity = record["parity"]
    kinds = {row["input"].rsplit(" ", 1)[1] for row in parity["prompt_inputs"]}
    assert kinds == {"clicks", "box+clicks", "clicks+mask"} and len(parity["prompt_inputs"]) == 9
    assert all(row["logits_max_abs"] <= ATOL and row["mask_dsc"] >= 0.999 for row in parity["prompt_inputs"])
    assert parity["passed"] and parity["worst"]["logits_max_abs"] <= ATOL


def test_box_exports_keep_the_box_interface(litemedsam_exports, full_exports):
    box = open_model(litemedsam_exports["onnx"]).record
    assert "prompts" not in box["options"] and input_names(box) == DECODER_INPUTS
    # the encoder does not depend on the decoder's interface
    full = full_exports["onnx"].path
    assert (full / "encoder.onnx").read_bytes() == (litemedsam_exports["onnx"] / "encoder.onnx").read_bytes()


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_full_decoder_segments_boxes_like_the_box_decoder(full_exports, litemedsam_exports, kind):
    case = sample_case("2DBox_Microscope_DSB2018-stardist.npz")
    full = open_model(full_exports[kind].path).segment_case(case)
    box = open_model(litemedsam_exports[kind]).segment_case(case)
    assert np.array_equal(full.segs, box.segs)


def test_openvino_full_decoder_runs_with_dynamic_shapes(full_exports):
    """A user's own OpenVINO code may compile the decoder once, for any N and P."""
    import openvino as ov

    reference = open_model(default_checkpoint_path()).backend
    decoder = ov.Core().compile_model(
        str(full_exports["openvino"].path / "decoder.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    embeddings = np.random.default_rng(0).normal(size=(1, 256, 64, 64)).astype(np.float32)
    for n, p in ((1, 1), (3, 4)):
        points = np.random.default_rng(n).uniform(0, 255, size=(n, p, 2)).astype(np.float32)
        prompts = prompt_arrays(np.tile([[20.0, 30, 200, 220]], (n, 1)), points, np.ones((n, p)))
        expected, _ = reference.decode_prompts(embeddings, prompts)
        feeds = dict(zip(PROMPT_DECODER_INPUTS, (embeddings, *prompts.arrays()), strict=True))
        np.testing.assert_allclose(decoder(feeds)["low_res_logits"], expected, rtol=0, atol=ATOL)


def test_converting_an_onnx_export_to_another_interface_is_refused(full_exports, tmp_path):
    with pytest.raises(MsamError, match="'full' prompt interface, not 'box'"):
        pipeline.export_openvino(full_exports["onnx"].path, tmp_path / "ov", prompts="box")
    with pytest.raises(MsamError, match="unknown prompt interface 'clicks'"):
        pipeline.export_onnx(default_checkpoint_path(), tmp_path / "x", prompts="clicks")
    assert not list(tmp_path.iterdir())


def test_medficientsam_golden_weights_full_interface(tmp_path):
    sd = make_weights.make_state_dict(golden_file("medficientsam_l0.manifest.json"))
    checkpoint = write_checkpoint(sd, tmp_path / "raw.pt", RAW)
    golden = np.load(golden_file("medficientsam_l0.golden.npz"))
    image = make_weights.golden_image().numpy()
    boxes = make_weights.boxes_for_python_path().numpy()
    onnx = pipeline.export_onnx(checkpoint, tmp_path / "onnx", prompts="full", parity_cases=())
    openvino = pipeline.export_openvino(tmp_path / "onnx", tmp_path / "openvino", parity_cases=())
    for artifact, kind in ((onnx, "onnx"), (openvino, "openvino")):
        parity = artifact.record["parity"]
        assert parity["passed"] and len(parity["prompt_inputs"]) == 3
        assert parity["worst"]["logits_max_abs"] <= ATOL
        # the golden box outputs of the original code, through the full interface (boxes as corners)
        assert_golden(backends(artifact.path, kind), image, boxes, golden)
