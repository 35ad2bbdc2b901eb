"""verify: agreement, DSC/NSD against ground truth, latency, thresholds and verdicts."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from conftest import REPO
from test_cli import run_cli

from msam_export.checkpoints import default_checkpoint_path
from msam_export.runtime import open_model
from msam_export.verify import Thresholds, run_verify

pytestmark = pytest.mark.slow
CASES = ("2DBox_US_HC18-000.npz", "3DBox_CT_MSDSpleen-spleen2.npz")


def crop_3d(name: str, dest, slices: int = 5) -> None:
    """A real 3D case cut to ``slices`` slices around its first box's middle (keeps tests fast)."""
    imgs = np.load(REPO / "msam_export" / "samples" / "imgs" / name)
    gts = np.load(REPO / "msam_export" / "samples" / "gts" / name)
    box = imgs["boxes"][0].copy()
    z0 = int((box[2] + box[5]) // 2) - slices // 2
    cut = slice(z0, z0 + slices)
    label = (gts["gts"][cut] == 1).astype(np.uint8)
    zs = np.nonzero(label.any(axis=(1, 2)))[0]
    box[2], box[5] = zs.min(), zs.max()
    np.savez(dest / "imgs" / name, imgs=imgs["imgs"][cut], boxes=box[None], spacing=imgs["spacing"])
    np.savez(dest / "gts" / name, gts=label, spacing=gts["spacing"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for sub in ("imgs", "gts"):
        (root / sub).mkdir()
        shutil.copy(REPO / "msam_export" / "samples" / sub / CASES[0], root / sub / CASES[0])
    crop_3d(CASES[1], root)
    return root


@pytest.fixture(scope="module")
def report(litemedsam_exports, data):
    candidate = open_model(litemedsam_exports["openvino"])
    reference = open_model(default_checkpoint_path())
    cases = sorted((data / "imgs").glob("*.npz"))
    return run_verify(candidate, reference, cases, data / "gts", repeats=2)


def test_openvino_fp32_agrees_with_pytorch(report):
    overall = report["overall"]
    assert report["schema"] == "msam-export/verify@1"
    assert overall["cases"] == 2 and overall["boxes"] == 2
    assert overall["agreement_dsc"] >= 0.999
    assert abs(overall["dsc_drop"]) < 1e-3 and abs(overall["nsd_drop"]) < 1e-3
    assert 0.5 < overall["reference_dsc"] <= 1
    assert set(report["by_modality"]) == {"US", "CT"}
    assert report["candidate"]["actual_precision"] == "f32"
    assert report["verdict"] == {"passed": True, "failures": []}


def test_latency_and_machine_are_recorded(report):
    row = next(r for r in report["cases"] if r["dims"] == "3D")
    latency = row["latency"]
    assert latency["encoder_calls"] > 1
    assert latency["encoder_ms_p90"] >= latency["encoder_ms_median"] > 0
    assert latency["wall_ms_p90"] >= latency["wall_ms_median"] > 0
    assert latency["decoder_ms_per_box"] > 0
    system = report["system"]
    assert set(system["isa"]) >= {"avx2", "avx512_vnni", "amx_int8"}
    assert system["peak_rss_mb"] > 100 and system["model"]


def test_thresholds_fail_and_nan_never_passes(report):
    assert Thresholds(min_agreement=1.01).failures(report["overall"]) == [
        f"mean agreement DSC {report['overall']['agreement_dsc']:.4f} < 1.01"
    ]
    assert Thresholds(max_dsc_drop=0.0, max_nsd_drop=0.0).failures({"dsc_drop": math.nan}) == [
        "DSC drop is missing or NaN (limit 0.0)",
        "NSD drop is missing or NaN (limit 0.0)",
    ]


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
