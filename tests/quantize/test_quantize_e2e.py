"""INT8 end to end on LiteMedSAM's real weights: OpenVINO (NNCF) and ONNX Runtime (QDQ)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO
from test_cli import run_cli

from msam_export.calibrate import calibrate, load_calibration
from msam_export.checkpoints import default_checkpoint_path
from msam_export.data import SAMPLES
from msam_export.errors import ParityError
from msam_export.quantize import Budget, quantize_onnx, quantize_openvino
from msam_export.runtime import open_model
from msam_export.zoo import get_spec

VALIDATION = ["2DBox_US_HC18-010.npz", "3DBox_CT_MSDSpleen-spleen2.npz"]


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """16 slices of the other bundled samples; a 2D case and a 3D case held out for the drift metric."""
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    calibrate(SAMPLES, path, model=default_checkpoint_path(), n=16, val_cases=VALIDATION, min_per_modality=2)
    return path


@pytest.fixture(scope="module")
def openvino_int8(litemedsam_exports, calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "openvino-int8"
    return quantize_openvino(litemedsam_exports["openvino"], out, calibration=calib, max_drift=0.1, target="avx2")


def _int8_constants(xml) -> list[np.ndarray]:
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return [
        op.get_data()
        for op in model.get_ops()
        if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8
    ]


@pytest.mark.slow
def test_openvino_int8_meets_its_drift_and_size(openvino_int8, litemedsam_exports):
    out, meta = openvino_int8.path, openvino_int8.record
    q = meta["quantization"]
    assert meta["kind"] == "openvino" and meta["options"]["precision"] == "int8"
    assert q["target"] == "avx2" and "overflow fix (7-bit weights)" in q["recipe"]
    rounding = q["weight_rounding"]
    assert rounding["method"] == "gptq" and "GPTQ weight rounding" in q["recipe"]
    assert rounding["layers"] > 0 and rounding["mean_output_error_vs_nearest"] < 1
    assert max(np.abs(codes).max() for codes in _int8_constants(out / "encoder.xml")) <= 64  # still 7-bit
    assert q["drift"]["agreement_dsc"] >= 0.9 and q["max_drift"] == 0.1 and q["max_modality_drift"] is None
    assert q["drift"]["cases"] == 2 and set(q["drift"]["agreement_by_case"]) == set(VALIDATION)
    assert q["calibration"]["validation_cases"] == VALIDATION and q["calibration"]["validation_windows"] == 1
    # the architecture-aware float scope was applied and is explained
    assert sum(q["float_scope"].values()) > 0 and all(q["float_scope"])
    fp32 = litemedsam_exports["openvino"]
    ratio = sum((out / f).stat().st_size for f in ("encoder.bin", "decoder.bin")) / sum(
        (fp32 / f).stat().st_size for f in ("encoder.bin", "decoder.bin")
    )
    assert ratio <= 0.45 and q["size_vs_fp32"] == pytest.approx(ratio, abs=1e-3)
    assert json.loads((out / "export.json").read_text())["quantization"]["decoder"] in ("int8-weights", "fp32")


@pytest.mark.slow
def test_openvino_int8_segments_like_fp32(openvino_int8, litemedsam_exports):
    """Through the predictor, on a case with 125 boxes (a stable mean): masks close to FP32's."""
    import numpy as np

    from msam_export.data import load_case
    from msam_export.metrics import agreement_dice

    case = load_case(REPO / "msam_export" / "samples" / "imgs" / "2DBox_Microscope_DSB2018-stardist.npz")
    a = open_model(litemedsam_exports["openvino"]).segment_case(case)
    b = open_model(openvino_int8.path).segment_case(case)
    agreement = np.mean([agreement_dice(x, y) for x, y in zip(a.box_masks, b.box_masks, strict=True)])
    assert 0.9 < agreement < 1.0  # close, and really quantized


@pytest.mark.slow
def test_unmet_drift_writes_nothing(litemedsam_exports, calib, tmp_path):
    """The mean and the modality floor are both held, and the message names the weakest modality."""
    out = tmp_path / "never"
    expected = r"INT8 agreement 0\.\d+ \(target 1\.0000\), weakest modality (US|CT) 0\.\d+ \(target 1\.0000\) after "
    with pytest.raises(ParityError, match=expected + ".*nothing written"):
        quantize_openvino(
            litemedsam_exports["openvino"],
            out,
            calibration=calib,
            max_drift=0.0,
            max_modality_drift=0.0,
            budget=Budget(max_float_modules=0),
        )
    assert not out.exists()
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_an_unreachable_limit_stops_before_the_search(litemedsam_exports, calib, tmp_path):
    with pytest.raises(ParityError, match="unreachable: .* with the whole budget in float"):
        quantize_openvino(
            litemedsam_exports["openvino"],
            tmp_path / "x",
            calibration=calib,
            max_drift=0.0,
            budget=Budget(max_float_modules=1),
        )


@pytest.mark.slow
def test_onnxruntime_int8(litemedsam_exports, calib, tmp_path):
    out = tmp_path / "onnx-int8"
    meta = quantize_onnx(litemedsam_exports["onnx"], out, calibration=calib, max_drift=0.2).record
    q = meta["quantization"]
    assert q["engine"] == "onnxruntime" and q["drift"]["agreement_dsc"] >= 0.8
    assert q["size_vs_fp32"] < 0.5
    opened = open_model(out)
    assert opened.kind == "onnx"


def test_cli_int8_needs_calib(tmp_path):
    result = run_cli("openvino", "--default", "--int8", "-o", str(tmp_path / "x"))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --int8 needs --calib FILE (make one with `msam-export calibrate`)"


def test_cli_rejects_a_modality_drift_out_of_range(tmp_path):
    calib = tmp_path / "calib.npz"
    calib.write_bytes(b"never read")
    result = run_cli(
        "openvino",
        "--default",
        "--int8",
        "--calib",
        str(calib),
        "--max-modality-drift",
        "1.5",
        "-o",
        str(tmp_path / "x"),
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --max-modality-drift must be in [0, 1)"
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_cli_rejects_a_calibration_file_of_another_model(litemedsam_exports, tmp_path):
    bad = tmp_path / "calib.npz"
    bad.write_bytes(b"not a calibration file")
    result = run_cli(
        "openvino", str(litemedsam_exports["openvino"]), "--int8", "--calib", str(bad), "-o", str(tmp_path / "x")
    )
    assert result.returncode == 2 and f"{bad}: not a calibration file (" in result.stderr


@pytest.mark.slow
def test_int8_with_the_full_prompt_interface_runs_click_rounds(calib, tmp_path):
    """``--prompts full`` carries through quantization, and the INT8 artifact refines with clicks."""
    from msam_export.verify import verify

    out = tmp_path / "int8-full"
    artifact = quantize_openvino(
        default_checkpoint_path(), out, calibration=calib, max_drift=0.1, target="avx2", prompts="full"
    )
    assert artifact.prompts == "full" and artifact.record["quantization"]["drift"]["agreement_dsc"] >= 0.9
    assert open_model(out).backend.interface == "full"
    cases = ["2DBox_US_HC18-000.npz", "2DBox_Fundus_CHASEDB1-Image01L.npz"]
    clicks = verify(out, SAMPLES, cases=cases, prompts="clicks:5").report["clicks"]
    assert [r["round"] for r in clicks["per_round"]] == list(range(6))
    agreement = [r["agreement_dsc"] for r in clicks["per_round"]]
    # round 0 is the box prompt; later rounds compound (each side clicks on its own masks)
    assert agreement[0] >= 0.9 and all(0.0 <= a <= 1.0 for a in agreement), agreement
    assert all(np.isfinite(r["candidate_dsc"]) for r in clicks["per_round"])


def _fed_by_fake_quantize(op) -> bool:
    """An activation quantizer on an input, looking through reshapes (window partition, head split)."""
    from msam_export.quantize.graph import feeding_quantizers

    return bool(feeding_quantizers(op))


@pytest.mark.slow
def test_qat_keeps_the_float_scope_and_the_encoder_that_agrees_better(litemedsam_exports, calib, tmp_path):
    """Two steps of quantization-aware distillation, scored at steps 0 and 2. The better-scoring
    student replaces the post-training encoder only when it agrees better with FP32; either way
    the IR has INT8 (FakeQuantize) inputs on the attention/MLP layers, none on the convolutions
    the spec keeps in float (all but the neck's: stem, first stage, patch merging, depthwise),
    and finite embeddings."""
    import openvino as ov

    from msam_export.quantize import QatOptions

    artifact = quantize_openvino(
        litemedsam_exports["openvino"],
        tmp_path / "qat",
        calibration=calib,
        max_drift=0.1,
        qat=QatOptions(steps=2, eval_every=2),
    )
    q = artifact.record["quantization"]
    assert q["qat"]["steps"] == 2 and q["qat"]["device"] == "cpu" and np.isfinite(q["qat"]["loss_last10"])
    scores = dict(q["qat"]["scores"])
    assert list(scores) == [0, 2] and q["qat"]["agreement_after"] == max(scores.values())
    assert scores[q["qat"]["best_step"]] == max(scores.values())
    assert q["qat"]["float_modules"] > 0 and q["drift"]["agreement_dsc"] >= 0.9
    if not q["accuracy_control"]["kept_float"]:  # the torch side starts from the layers PTQ rounded with GPTQ
        assert q["qat"]["gptq_seeded_weights"] == q["weight_rounding"]["layers"]
    before, after = q["qat"]["agreement_before"], q["qat"]["agreement_after"]
    assert q["qat"]["kept"] == ("qat" if after > before else "post-training")
    model = ov.Core().read_model(artifact.path / "encoder.xml")
    # a distilled encoder is traced from PyTorch (".neck." names), a post-training one from ONNX ("/neck/")
    names = [op.get_friendly_name() for op in model.get_ops()]
    assert any(".neck." in n for n in names) == (q["qat"]["kept"] == "qat")
    convolutions = [op for op in model.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    float_convolutions = [op for op in convolutions if "neck" not in op.get_friendly_name()]
    assert len(float_convolutions) >= 20 and not any(_fed_by_fake_quantize(op) for op in float_convolutions)
    matmuls = [op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    assert sum(_fed_by_fake_quantize(op) for op in matmuls) >= 16
    image = load_calibration(calib, get_spec("litemedsam")).train_images[:1]
    out = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(image)[0]
    assert np.isfinite(out).all() and out.std() > 0
