"""gate: verdicts (pass, regressions, NaN/missing metrics, other data, latency) and exit codes."""

from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET

import pytest
from publish_fixtures import CASES, bundles, edited_report, flip_byte, invoke, make_data, verified

from msam_export.publish import GateLimits, passed, run_gate
from msam_export.publish.gate import Evidence, accuracy_checks
from msam_export.publish.junit import junit_tree

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reports(tmp_path_factory, litemedsam_exports):
    return verified(tmp_path_factory, litemedsam_exports)


@pytest.fixture(scope="module")
def published(tmp_path_factory, litemedsam_exports):
    return bundles(tmp_path_factory, litemedsam_exports)


@pytest.fixture(scope="module")
def latency_data(tmp_path_factory):
    """One real one-box 2D case: what both artifacts are re-run on."""
    return make_data(tmp_path_factory.mktemp("latency"), CASES[:1], gts=False)


def statuses(checks):
    return {c.name: c.status for c in checks}


def junit(path):
    suite = ET.parse(path).getroot().find("testsuite")
    return suite, {case.get("name"): case for case in suite.findall("testcase")}


def test_faster_artifact_passes_with_junit(published, latency_data, tmp_path):
    """OpenVINO replacing ONNX Runtime: same model and data, faster here (both re-run now)."""
    xml = tmp_path / "gate.xml"
    args = ("gate", published["openvino"], "--baseline", published["onnx"], "--data", latency_data)
    result = invoke(*args, "--repeats", "2", "--junit", xml)
    assert result.code == 0, result.stdout + result.stderr
    assert "openvino vs onnx" in result.stdout and "PASS" in result.stdout
    suite, cases = junit(xml)
    assert set(cases) == {"provenance", "cases", "data", "agreement", "DSC", "NSD", "latency"}
    assert suite.get("tests") == "7" and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert all(case.find("failure") is None for case in cases.values())
    assert cases["latency"].get("classname") == "gate.openvino vs onnx"
    ratio = float(cases["latency"].find("system-out").text.split()[1].rstrip(","))
    assert 0 < ratio <= 1.10


def test_slower_artifact_is_a_latency_regression(published, latency_data, tmp_path):
    """ONNX Runtime replacing OpenVINO: its encoder is genuinely slower on these CPUs."""
    xml = tmp_path / "gate.xml"
    args = ("gate", published["onnx"], "--baseline", published["openvino"], "--data", latency_data)
    result = invoke(*args, "--max-latency-ratio", "1.05", "--repeats", "3", "--junit", xml)
    assert result.code == 1, result.stdout + result.stderr
    suite, cases = junit(xml)
    assert suite.get("failures") == "1"
    failure = cases["latency"].find("failure")
    assert failure is not None and "limit <= 1.05" in failure.get("message")
    assert float(failure.get("message").split()[1].rstrip(",")) > 1.05


def test_same_artifact_without_baseline_passes(published):
    checks = run_gate(published["both"])
    assert passed(checks)
    assert {(c.artifact, c.name, c.status) for c in checks if c.name == "latency"} == {
        ("onnx", "latency", "skip"),
        ("openvino", "latency", "skip"),
    }
    assert statuses(checks)["DSC"] == "pass"


def shifted(key, delta):
    return lambda r: r["overall"].update({key: r["overall"][key] + delta})


@pytest.mark.parametrize(
    ("edit", "failed", "detail"),
    [
        (shifted("candidate_dsc", -0.02), "DSC", "vs baseline"),
        (shifted("candidate_nsd", -0.006), "NSD", "vs baseline"),
        (lambda r: r["overall"].update(candidate_nsd=math.nan), "NSD", "candidate_nsd is nan (NaN or not a number)"),
        (lambda r: r["overall"].pop("agreement_dsc"), "agreement", "agreement_dsc is missing"),
        (lambda r: r["overall"].update(candidate_dsc=None), "DSC", "candidate_dsc is null"),
        (lambda r: r["overall"].update(agreement_dsc=0.95), "agreement", "mask DSC vs PyTorch FP32"),
        (lambda r: r["data"].update(fingerprint="0" * 64), "data", "verified on different data"),
        (lambda r: r["data"].pop("fingerprint"), "data", "data fingerprint missing"),
        (lambda r: r["cases"][0].update(error="bad case"), "cases", "1 case(s) failed in verify"),
    ],
    ids=["dsc", "nsd", "nan", "missing", "null", "agreement", "other-data", "no-fingerprint", "case-error"],
)
def test_regressions_fail_exit_1(published, reports, tmp_path, edit, failed, detail):
    current = edited_report(reports["openvino"], tmp_path / "current.json", edit)
    xml = tmp_path / "gate.xml"
    result = invoke("gate", current, "--baseline", published["openvino"], "--no-latency", "--junit", xml)
    assert result.code == 1, result.stdout + result.stderr
    suite, cases = junit(xml)
    failures = {name for name, case in cases.items() if case.find("failure") is not None}
    assert failures == {failed}
    assert detail in cases[failed].find("failure").get("message")
    assert cases["latency"].find("skipped") is not None and suite.get("skipped") == "1"


def test_without_baseline_the_drop_vs_pytorch_counts(reports):
    report = json.loads(reports["onnx"].read_text())
    good = accuracy_checks("onnx", Evidence("onnx", report), None, GateLimits())
    assert statuses(good) == {"cases": "pass", "agreement": "pass", "DSC": "pass", "NSD": "pass"}
    report["overall"]["dsc_drop"] = 0.01
    report["overall"]["nsd_drop"] = math.nan
    bad = statuses(accuracy_checks("onnx", Evidence("onnx", report), None, GateLimits()))
    assert bad["DSC"] == "fail" and bad["NSD"] == "fail"


def test_verify_json_current_cannot_time_latency(published, reports):
    checks = run_gate(reports["openvino"], published["openvino"], latency_cases=[])
    latency = next(c for c in checks if c.name == "latency")
    assert latency.status == "fail" and "needs two bundles" in latency.detail
    assert not passed(checks)


def test_forced_bundle_does_not_pass(litemedsam_exports, reports, tmp_path):
    from msam_export.publish import publish_bundle

    other = edited_report(reports["onnx"], tmp_path / "v.json", lambda r: r["candidate"].update(model="l0"))
    publish_bundle([(litemedsam_exports["onnx"], other)], tmp_path / "forced", force=True)
    checks = run_gate(tmp_path / "forced")
    assert statuses(checks)["provenance"] == "fail" and not passed(checks)


def test_unusable_input_exit_2(published, reports, tmp_path):
    tampered = shutil.copytree(published["onnx"], tmp_path / "tampered")
    flip_byte(tampered / "onnx" / "encoder.onnx")
    (tmp_path / "export.json").write_text(json.dumps({"schema": "msam-export/export@1"}))
    cases = [
        ((tampered,), "fails its integrity check (onnx/encoder.onnx changed)"),
        ((reports["onnx"], "--baseline", tampered), f"error: baseline {tampered}: fails its integrity check"),
        ((tmp_path / "export.json",), "not a verify report"),
        ((tmp_path / "nothing",), "no such file or directory"),
        ((tmp_path,), "not a bundle (no manifest.json) nor a verify.json"),
    ]
    for args, message in cases:
        xml = tmp_path / "gate.xml"
        result = invoke("gate", *args, "--junit", xml)
        assert result.code == 2 and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1
        suite, junit_cases = junit(xml)
        assert suite.get("errors") == "1" and junit_cases["input"].find("error") is not None


def test_junit_escapes_and_counts():
    from msam_export.publish import Check

    tree = junit_tree([Check("a<b", "DSC", "fail", "+0.1", "drop <= 0.005", 'x & "y"'), Check("a", "latency", "skip")])
    suite = tree.getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "1")
    failure = suite.find("testcase/failure")
    assert failure.get("message") == 'value +0.1, limit drop <= 0.005: x & "y"'
    assert ET.tostring(tree.getroot()).count(b"&amp;") >= 1
