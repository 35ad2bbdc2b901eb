"""verify: agreement, DSC/NSD against ground truth, latency, thresholds and verdicts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import REPO, crop_3d
from test_cli import run_cli

from msam_export.checkpoints import default_checkpoint_path
from msam_export.runtime import open_model
from msam_export.verify import verify

CASES = ("2DBox_US_HC18-000.npz", "3DBox_CT_MSDSpleen-spleen2.npz")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for sub in ("imgs", "gts"):
        (root / sub).mkdir()
        shutil.copy(REPO / "msam_export" / "samples" / sub / CASES[0], root / sub / CASES[0])
    crop_3d(CASES[1], root)
    return root


@pytest.fixture(scope="module")
def result(litemedsam_exports, data, tmp_path_factory):
    candidate = open_model(litemedsam_exports["openvino"])
    out = tmp_path_factory.mktemp("verify") / "verify.json"
    return verify(candidate, data, reference=default_checkpoint_path(), repeats=2, output=out, html=False)


@pytest.fixture(scope="module")
def report(result):
    return result.report


@pytest.mark.slow
def test_openvino_fp32_agrees_with_pytorch(report, result):
    overall = report["overall"]
    assert report["schema"] == "msam-export/verify@1"
    assert overall["cases"] == 2 and overall["boxes"] == 2
    assert overall["agreement_dsc"] >= 0.999
    assert abs(overall["dsc_drop"]) < 1e-3 and abs(overall["nsd_drop"]) < 1e-3
    assert 0.5 < overall["reference_dsc"] <= 1
    assert set(report["by_modality"]) == {"US", "CT"}
    assert report["candidate"]["actual_precision"] == "f32" and report["candidate"]["weights"] == "fp32"
    assert report["verdict"] == {"passed": True, "failures": []} and result.passed
    assert report["thresholds"] == {"min_agreement": 0.99, "max_dsc_drop": 0.005, "max_nsd_drop": 0.005}
    saved, bands = json.loads(result.path.read_text())["overall"], "agreement_2d_by_object_size"
    assert saved.pop(bands) == report["overall"][bands]
    assert saved == pytest.approx({k: v for k, v in report["overall"].items() if k != bands}, nan_ok=True)


@pytest.mark.slow
def test_2d_boxes_carry_the_pixel_area_of_the_reference_mask(report, data):
    row = next(r for r in report["cases"] if r["dims"] == "2D")
    reference = open_model(default_checkpoint_path()).segment_case(data / "imgs" / CASES[0])
    assert (
        row["reference_pixels_per_box"] == [int(np.count_nonzero(reference.segs == 1))]
        and 1000 < row["reference_pixels_per_box"][0]
    )
    [band] = report["overall"]["agreement_2d_by_object_size"]  # the 3D case has no band
    assert band["boxes"] == 1 and band["agreement_dsc"] == pytest.approx(row["agreement_dsc"])
    assert "reference_pixels_per_box" not in next(r for r in report["cases"] if r["dims"] == "3D")


@pytest.mark.slow
def test_3d_is_propagated_with_the_spec_rule_and_teacher_forced(report):
    assert report["propagation"] == "margin:3" and report["candidate"]["propagation"] == "margin:3"
    row = next(r for r in report["cases"] if r["dims"] == "3D")
    assert row["teacher_forced_agreement_dsc"] >= 0.999 and len(row["agreement_per_slice"]) == 5
    assert 0 <= row["worst_slice"] < 5
    assert set(report["by_dims"]) == {"2D", "3D"}


@pytest.mark.slow
def test_challenge_scores_are_what_the_challenge_computes(report, data, litemedsam_exports):
    """verify.json's challenge_dsc/challenge_nsd equal metrics.challenge_case_scores on the segs, which the
    official compute_metrics.py reproduces (tests/test_metrics.py)."""
    from msam_export.data import load_case, load_ground_truth
    from msam_export.metrics import challenge_case_scores

    model = open_model(litemedsam_exports["openvino"])
    for row in report["cases"]:
        case = load_case(data / "imgs" / row["case"])
        gts, spacing = load_ground_truth(data / "gts" / row["case"], case)
        expected = challenge_case_scores(model.segment_case(case).segs, gts, spacing if case.is_3d else None)
        assert row["candidate"]["challenge_dsc"] == pytest.approx(expected["dsc"], abs=1e-12)
        assert row["candidate"]["challenge_nsd"] == pytest.approx(expected["nsd"], abs=1e-12)
    overall = report["overall"]
    assert overall["candidate_challenge_nsd"] >= overall["candidate_nsd"]  # the challenge gates NSD per case


@pytest.mark.slow
def test_latency_and_machine_are_recorded(report):
    row = next(r for r in report["cases"] if r["dims"] == "3D")
    latency = row["latency"]
    assert latency["encoder_calls"] > 1
    assert latency["encoder_ms_p90"] >= latency["encoder_ms_median"] > 0
    assert latency["wall_ms_p90"] >= latency["wall_ms_median"] > 0
    assert latency["decoder_ms_per_box"] > 0
    assert latency["host"] and latency["cpu"] and report["latency_note"] == "measured on one machine"
    system = report["system"]
    assert set(system["isa"]) >= {"avx2", "avx512_vnni", "amx_int8"}
    assert system["peak_rss_mb"] > 100 and system["model"]
    cold = report["cold_start"]
    assert cold["open_ms"] > 0 and cold["first_encoder_call_ms"] > 0 and cold["warm_encoder_ms_median"] > 0
    assert report["arithmetic"] == {
        "int8": False, "cpu": report["arithmetic"]["cpu"], "target": None, "exact": True, "emulated": False
    }  # fmt: skip


@pytest.mark.slow
def test_verify_cli_threshold_exit_1(litemedsam_exports, data, tmp_path):
    out = tmp_path / "verify.json"
    result = run_cli(
        "verify", str(litemedsam_exports["onnx"]), "--data", str(data), "-o", str(out), "--min-agreement", "1.5"
    )
    assert result.returncode == 1, result.stderr
    assert "FAIL mean agreement DSC" in result.stderr
    saved = json.loads(out.read_text())
    assert saved["verdict"]["passed"] is False and saved["overall"]["agreement_dsc"] >= 0.999
    assert "by_modality" in saved and saved["candidate"]["kind"] == "onnx"
