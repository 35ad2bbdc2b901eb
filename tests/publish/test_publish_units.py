"""Fast unit tests: artifact names, format registry, metric reading, data fingerprint."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import pytest
from publish_fixtures import CASES, make_data

from msam_export.errors import MsamError
from msam_export.publish import BUILDERS, parse_formats
from msam_export.publish.gate import number
from msam_export.publish.manifest import VERIFY_SCHEMA, bundle_name
from msam_export.verify.report import SCHEMA, data_fingerprint


def test_bundle_name_refuses_unsafe_kind():
    with pytest.raises(MsamError, match="cannot name a bundle directory"):
        bundle_name({"kind": "../x", "options": {"precision": "fp32"}})


def test_verify_schema_matches():
    assert VERIFY_SCHEMA == SCHEMA


def test_publish_and_check_import_without_torch():
    """`check` is a hashing tool: importing the publish package must not pull in torch."""
    code = "import sys, msam_export.publish; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_format_registry():
    assert list(BUILDERS) == ["onnx", "openvino", "openvino-int8"]
    assert parse_formats(" onnx, openvino ") == ["onnx", "openvino"]
    for text, message in (("", "empty"), ("onnx,tflite", "unknown format"), ("onnx,onnx", "twice")):
        with pytest.raises(MsamError, match=message):
            parse_formats(text)


def test_number_never_passes_nan_or_missing():
    assert number({"a": 0.5}, "a") == 0.5 and number({"a": 1}, "a") == 1.0
    for section in ({}, {"a": None}, {"a": math.nan}, {"a": math.inf}, {"a": "0.5"}, {"a": True}, None):
        assert number(section, "a") is None


def test_data_fingerprint_follows_bytes_and_ground_truth(tmp_path):
    one = make_data(tmp_path / "one")
    two = make_data(tmp_path / "two")
    cases = sorted((one / "imgs").glob("*.npz"))
    same = data_fingerprint(sorted((two / "imgs").glob("*.npz"), reverse=True), two / "gts")
    assert data_fingerprint(cases, one / "gts") == same
    assert data_fingerprint(cases, None) != same
    assert data_fingerprint(cases[:1], one / "gts") != same
    shutil.copyfile(one / "gts" / CASES[1], one / "gts" / CASES[0])
    assert data_fingerprint(cases, one / "gts") != same


@pytest.mark.parametrize("limits", [{"max_drift": 1.0}, {"max_modality_drift": -0.1}])
def test_publish_checks_drift_limits_before_building_anything(tmp_path, limits):
    from msam_export.publish import publish

    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"never read")
    with pytest.raises(MsamError, match=r"must be in \[0, 1\)"):
        publish(checkpoint, tmp_path / "bundle", formats="openvino-int8", data=tmp_path, **limits)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]
