"""segment: challenge-compatible outputs; bad cases reported, never half-written."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from conftest import sample_case
from test_cli import run_cli

from msam_export.runtime import open_model
from msam_export.runtime.segment import segment


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(sample_case("2DBox_US_HC18-000.npz"), folder)
    (folder / "2DBox_US_broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    volume = np.zeros((4, 32, 32), np.uint8)
    np.savez(folder / "2DBox_CT_wrongrank.npz", imgs=volume, boxes=np.array([[1, 1, 10, 10]]))
    np.savez(folder / "2DBox_US_outside.npz", imgs=np.zeros((20, 20, 3), np.uint8), boxes=np.array([[0, 0, 40, 10]]))
    return folder


@pytest.mark.slow
def test_segment_goes_on_after_bad_cases(litemedsam_exports, inputs, tmp_path):
    out = tmp_path / "out"
    run = segment(open_model(litemedsam_exports["openvino"]), inputs, out)
    status = {r["case"]: r["status"].split(": ", 2)[-1] for r in run.rows}
    assert status["2DBox_US_HC18-000.npz"] == "ok"
    assert status["2DBox_US_broken.npz"] == "not a readable npz archive (File is not a zip file)"
    assert status["2DBox_CT_wrongrank.npz"].startswith(
        "2D case but 'imgs' has shape (4, 32, 32), which looks like a 3D"
    )
    assert status["2DBox_US_outside.npz"] == "box 0 [0, 0, 40, 10]: x range [0, 40] outside the image (0..20)"
    assert [r["case"] for r in run.failed] == ["2DBox_CT_wrongrank.npz", "2DBox_US_broken.npz", "2DBox_US_outside.npz"]
    assert sorted(p.name for p in out.iterdir()) == ["2DBox_US_HC18-000.npz", "timings.csv"]
    segs = np.load(out / "2DBox_US_HC18-000.npz")["segs"]
    assert segs.dtype == np.uint16 and segs.shape == (540, 800) and set(np.unique(segs)) == {0, 1}


@pytest.mark.slow
def test_segment_cli_exit_code_and_csv(litemedsam_exports, inputs, tmp_path):
    out = tmp_path / "out"
    result = run_cli("segment", str(litemedsam_exports["onnx"]), str(inputs), str(out))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    stderr = " ".join(result.stderr.split())
    assert "2DBox_US_broken.npz: error: " in stderr and "not a readable npz archive (File is not a zip file)" in stderr
    with (out / "timings.csv").open() as f:
        rows = list(csv.DictReader(f))
    ok = [r for r in rows if r["status"] == "ok"]
    assert [r["case"] for r in ok] == ["2DBox_US_HC18-000.npz"]
    assert ok[0]["encoder_calls"] == "1" and float(ok[0]["wall_ms"]) > 0
    assert ok[0]["host"] and ok[0]["cpu"] and ok[0]["propagation"] == ""
    assert len(rows) == 4


def test_segment_cli_distilled_checkpoint_needs_decoder(tmp_path, inputs):
    import make_weights
    import torch
    from conftest import FIXTURES

    sd = make_weights.make_state_dict(FIXTURES / "medficientsam_l0.manifest.json")
    student = {
        "student_encoder." + k[len("image_encoder.") :]: v for k, v in sd.items() if k.startswith("image_encoder.")
    }
    torch.save({"state_dict": student}, tmp_path / "step_400000.ckpt")
    result = run_cli("segment", str(tmp_path / "step_400000.ckpt"), str(inputs), str(tmp_path / "out"))
    assert result.returncode == 2
    assert "encoder-only" in result.stderr and "segment needs a prompt encoder and mask decoder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
