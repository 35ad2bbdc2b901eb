"""CLI: exit codes and one-line errors of onnx / openvino; nothing written on failure."""

from __future__ import annotations

import json
import os

import pytest
from test_cli import run_cli

from msam_export.files import sha256_of


@pytest.mark.slow
def test_onnx_json_summary(tmp_path):
    out = tmp_path / "lite"
    result = run_cli("onnx", "--default", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["parity"]["passed"] and summary["model"]["variant"] == "litemedsam"
    assert summary["files"]["encoder.onnx"]["sha256"] == sha256_of(out / "encoder.onnx")


@pytest.mark.parametrize("cmd", ["onnx", "openvino"])
def test_bad_checkpoint_writes_nothing(tmp_path, cmd):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(os.urandom(1000))
    result = run_cli(cmd, str(bad), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_non_empty_output_without_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    result = run_cli("onnx", "--default", "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'out'} exists and is not empty (use --overwrite to replace it)"


def test_openvino_rejects_unknown_weight_format(tmp_path):
    result = run_cli("openvino", "--default", "--weight-format", "int4", "-o", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown weight format 'int4'; choose one of fp32, fp16"
