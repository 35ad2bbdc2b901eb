"""Simulated click refinement (verify --prompts clicks:K): the click rule, and the rounds end to end
for FP32 artifacts against the PyTorch reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import run_cli

from msam_export.data import SAMPLES
from msam_export.errors import MsamError
from msam_export.verify import verify
from msam_export.verify.clicks import next_click, parse_prompts

# the bundled 2D cases with few boxes (the two microscopy cases hold 125 and 159: minutes per round)
CLICK_CASES = ["2DBox_Fundus_CHASEDB1-Image01L.npz", "2DBox_US_HC18-000.npz", "2DBox_US_HC18-010.npz"]


def test_parse_prompts():
    assert parse_prompts("box") == 0 and parse_prompts("clicks") == 5 and parse_prompts("clicks:3") == 3
    for bad in ("clicks:0", "clicks:21", "clicks:x", "points"):
        with pytest.raises(MsamError, match="expected box, clicks or clicks:K"):
            parse_prompts(bad)


def test_a_missed_region_gets_a_foreground_click_at_its_centre():
    truth = np.zeros((40, 60), dtype=bool)
    truth[10:30, 20:50] = True
    mask = truth.copy()
    mask[10:30, 35:50] = False  # the right half missed: a 20 x 15 region
    mask[0:2, 0:2] = True  # a small wrong region elsewhere
    x, y, label = next_click(mask, truth)
    assert label == 1.0 and 40 <= x <= 44 and 17 <= y <= 22  # the middle of columns 35..49, rows 10..29


def test_a_larger_wrong_region_gets_a_background_click():
    truth = np.zeros((40, 60), dtype=bool)
    truth[5:8, 5:8] = True
    mask = truth.copy()
    mask[20:35, 30:55] = True
    mask[5, 5] = False
    x, y, label = next_click(mask, truth)
    assert label == 0.0 and mask[int(y), int(x)] and not truth[int(y), int(x)]
    assert next_click(truth, truth) is None
    assert next_click(np.zeros_like(truth), np.zeros_like(truth)) is None


@pytest.fixture(scope="module")
def full_onnx(litemedsam_full_exports):
    return litemedsam_full_exports["onnx"]


@pytest.mark.slow
def test_click_rounds_on_the_bundled_2d_cases(full_onnx, tmp_path):
    result = verify(full_onnx.path, SAMPLES, cases=CLICK_CASES, prompts="clicks:5", output=tmp_path / "v.json")
    clicks = json.loads((tmp_path / "v.json").read_text())["clicks"]
    assert clicks["rounds"] == 5 and [r["round"] for r in clicks["per_round"]] == list(range(6))
    assert {c["case"] for c in clicks["cases"]} == set(CLICK_CASES) and not clicks["skipped"]
    # round 0 is the box prompt: the same scores as the box verification of those cases
    first = clicks["per_round"][0]
    assert first["reference_dsc"] == pytest.approx(result.report["overall"]["reference_dsc"], abs=1e-12)
    assert first["candidate_dsc"] == pytest.approx(result.report["overall"]["candidate_dsc"], abs=1e-12)
    for row in clicks["per_round"]:
        assert row["agreement_dsc"] >= 0.999  # FP32 ONNX Runtime follows PyTorch round after round
    for case in clicks["cases"]:
        counts = [r["reference_clicks"] for r in case["rounds"]]
        assert counts[0] == 0 and counts == sorted(counts) and counts[-1] >= 1
    # the clicks changed the masks: later rounds are not the box result repeated
    assert any(abs(r["reference_dsc"] - first["reference_dsc"]) > 1e-3 for r in clicks["per_round"][1:])


@pytest.mark.slow
def test_clicks_need_the_full_interface_and_3d_is_skipped(full_onnx, litemedsam_exports, tmp_path):
    with pytest.raises(MsamError, match="needs a decoder with the full prompt interface"):
        verify(litemedsam_exports["onnx"], SAMPLES, cases=CLICK_CASES[:1], prompts="clicks:1")
    from conftest import crop_3d

    for sub in ("imgs", "gts"):
        (tmp_path / sub).mkdir()
    crop_3d("3DBox_CT_MSDSpleen-spleen2.npz", tmp_path, slices=3)
    report = verify(full_onnx.path, tmp_path, prompts="clicks:1").report
    assert report["clicks"]["skipped"] == [
        {"case": "3DBox_CT_MSDSpleen-spleen2.npz", "why": "3D: clicks are simulated on 2D cases"}
    ]


@pytest.mark.slow
def test_cli_prints_the_round_table(full_onnx, tmp_path):
    data = tmp_path / "data"
    for sub in ("imgs", "gts"):
        (data / sub).mkdir(parents=True)
        (data / sub / CLICK_CASES[1]).write_bytes((SAMPLES / sub / CLICK_CASES[1]).read_bytes())
    proc = run_cli("verify", str(full_onnx.path), "--data", str(data), "--prompts", "clicks:2", "--no-html")
    assert proc.returncode == 0, proc.stderr
    assert "click refinement, 2 rounds on 1 2D case(s)" in proc.stdout
    bad = run_cli("verify", str(full_onnx.path), "--data", str(data), "--prompts", "clicks:99")
    assert bad.returncode == 2 and "expected box, clicks or clicks:K" in bad.stderr
    assert "Traceback" not in bad.stderr
