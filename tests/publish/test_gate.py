"""gate: verdicts (pass, regressions, NaN/missing metrics, other data, latency) and exit codes."""

from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from publish_fixtures import CASES, bundles, edited_report, flip_byte, invoke, make_data, verified

from msam_export.limits import DEFAULT_LIMITS, INT8_LIMITS
from msam_export.publish import passed, run_gate
from msam_export.publish.gate import Evidence, accuracy_checks, pair_up
from msam_export.publish.junit import junit_tree
from msam_export.publish.latency import interleaved_latency


@pytest.fixture(scope="module")
def reports(tmp_path_factory, litemedsam_exports):
    return verified(tmp_path_factory, litemedsam_exports)


@pytest.fixture(scope="module")
def published(tmp_path_factory, litemedsam_exports):
    return bundles(tmp_path_factory, litemedsam_exports)


def statuses(checks):
    return {c.name: c.status for c in checks}


def junit(path):
    suite = ET.parse(path).getroot().find("testsuite")
    return suite, {case.get("name"): case for case in suite.findall("testcase")}


class Clock:
    """Runners with made-up case times (ms per case name and side), recording the call order."""

    def __init__(self, ms: dict[str, float]) -> None:
        self.ms, self.calls = ms, []

    def runners(self):
        def runner(side):
            def run(case):
                self.calls.append((side, case.name))
                return self.ms[side] * (2.0 if case.name == "slow" else 1.0)

            return run

        return {"baseline": runner("baseline"), "current": runner("current")}


def fake_cases(*names):
    from types import SimpleNamespace

    return [SimpleNamespace(name=n) for n in names]


def test_interleaved_latency_alternates_and_warms_up():
    clock = Clock({"baseline": 100.0, "current": 80.0})
    result = interleaved_latency(clock.runners(), fake_cases("a", "slow"), repeats=2)
    assert clock.calls[:2] == [("baseline", "a"), ("current", "a")]  # untimed warm-up, each side
    timed = clock.calls[2:]
    assert timed[:4] == [("baseline", "a"), ("current", "a"), ("baseline", "slow"), ("current", "slow")]
    assert timed[4:] == [("current", "a"), ("baseline", "a"), ("current", "slow"), ("baseline", "slow")]
    assert result["current_ms_best"] == 80.0 + 160.0 and result["baseline_ms_best"] == 100.0 + 200.0
    assert result["ratio_best"] == pytest.approx(0.8) and result["ratio_median"] == pytest.approx(0.8)


def gate_with_clock(published, ms, limit=1.10):
    def latency(current, baseline, cases, repeats, threads):
        return interleaved_latency(Clock(ms).runners(), fake_cases(*(p.name for p in cases)), repeats)

    limits = DEFAULT_LIMITS.with_changes(max_latency_ratio=limit)
    return run_gate(published["openvino"], published["onnx"], limits, [Path("x.npz")], 2, None, latency)


@pytest.mark.slow
def test_faster_artifact_passes_the_latency_check(published):
    checks = gate_with_clock(published, {"baseline": 100.0, "current": 90.0})
    latency = next(c for c in checks if c.name == "latency")
    assert latency.status == "pass" and latency.value == "0.900" and passed(checks)


@pytest.mark.slow
def test_slower_artifact_is_a_latency_regression(published):
    checks = gate_with_clock(published, {"baseline": 100.0, "current": 106.0}, limit=1.05)
    latency = next(c for c in checks if c.name == "latency")
    assert latency.status == "fail" and latency.value == "1.060" and latency.limit == "<= 1.05"
    assert not passed(checks)


@pytest.mark.slow
def test_no_usable_timing_fails(published):
    checks = gate_with_clock(published, {"baseline": 0.0, "current": 10.0})
    latency = next(c for c in checks if c.name == "latency")
    assert latency.status == "fail" and "no usable timing" in latency.detail


@pytest.mark.slow
def test_gate_cli_with_a_real_latency_rerun_and_junit(published, tmp_path):
    """One real interleaved re-run (its ratio is whatever this machine gives; the logic is tested above)."""
    data = make_data(tmp_path / "latency", CASES[:1], gts=False)
    xml = tmp_path / "gate.xml"
    args = ("gate", published["openvino"], "--baseline", published["onnx"], "--data", data)
    result = invoke(*args, "--repeats", "1", "--max-latency-ratio", "100", "--junit", xml)
    assert result.code == 0, result.stdout + result.stderr
    assert "openvino vs onnx" in result.stdout and "PASS" in result.stdout
    suite, cases = junit(xml)
    assert set(cases) == {"provenance", "cases", "data", "arithmetic", "agreement", "DSC", "NSD", "latency"}
    assert suite.get("tests") == "8" and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert cases["latency"].get("classname") == "gate.openvino vs onnx"
    ratio = float(cases["latency"].find("system-out").text.split()[1].rstrip(","))
    assert 0 < ratio <= 100


@pytest.mark.slow
def test_int8_limits_come_from_the_record_not_the_name(reports):
    """A lone FP32 current paired with a lone INT8 baseline is held to the FP32 limits."""
    report = json.loads(reports["openvino"].read_text())
    report["overall"]["agreement_dsc"] = 0.97  # passes INT8's 0.95, fails FP32's 0.99
    current = {"openvino": Evidence("openvino", report, "fp32")}
    baseline = {"openvino-int8": Evidence("openvino-int8", json.loads(reports["openvino"].read_text()), "int8")}
    [(label, cur, base)], _ = pair_up(current, baseline)
    assert label == "openvino vs openvino-int8"
    checks = statuses(accuracy_checks(label, cur, base, DEFAULT_LIMITS))
    assert checks["agreement"] == "fail"
    as_int8 = statuses(accuracy_checks(label, Evidence("x", report, "int8"), base, DEFAULT_LIMITS))
    assert as_int8["agreement"] == "pass" and INT8_LIMITS.min_agreement == 0.95


@pytest.mark.slow
def test_different_arithmetic_is_not_compared(reports):
    report = json.loads(reports["openvino"].read_text())
    other = json.loads(reports["openvino"].read_text())
    report["arithmetic"] = {"int8": True, "cpu": "avx2", "target": "vnni", "exact": False, "emulated": True}
    other["arithmetic"] = {"int8": True, "cpu": "amx", "target": "vnni", "exact": True, "emulated": False}

    def check(a, b):
        checks = accuracy_checks("x", Evidence("x", a, "int8"), Evidence("x", b, "int8"), DEFAULT_LIMITS)
        return next(c for c in checks if c.name == "arithmetic")

    assert check(report, other).status == "fail" and "different arithmetic" in check(report, other).detail
    assert check(report, other).value == "int8 for vnni (emulated) / int8 for vnni"
    native = json.loads(json.dumps(other)) | {"arithmetic": other["arithmetic"] | {"cpu": "vnni"}}
    assert check(native, other).status == "pass"  # the same target on two CPUs that both run it


@pytest.mark.slow
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
@pytest.mark.slow
def test_regressions_fail_exit_1(published, reports, tmp_path, edit, failed, detail):
    current = edited_report(reports["openvino"], tmp_path / "current.json", edit)
    xml = tmp_path / "gate.xml"
    result = invoke("gate", current, "--baseline", published["openvino"], "--no-latency", "--junit", xml)
    assert result.code == 1, result.stdout + result.stderr
    suite, cases = junit(xml)
    failures = {name for name, case in cases.items() if case.find("failure") is not None}
    assert failures == {failed}, failures
    assert detail in cases[failed].find("failure").get("message")
    assert cases["latency"].find("skipped") is not None and suite.get("skipped") == "1"


@pytest.mark.slow
def test_without_baseline_the_drop_vs_pytorch_counts(reports):
    report = json.loads(reports["onnx"].read_text())
    good = accuracy_checks("onnx", Evidence("onnx", report), None, DEFAULT_LIMITS)
    assert statuses(good) == {"cases": "pass", "agreement": "pass", "DSC": "pass", "NSD": "pass"}
    report["overall"]["dsc_drop"] = 0.01
    report["overall"]["nsd_drop"] = math.nan
    bad = statuses(accuracy_checks("onnx", Evidence("onnx", report), None, DEFAULT_LIMITS))
    assert bad["DSC"] == "fail" and bad["NSD"] == "fail"


@pytest.mark.slow
def test_verify_json_current_cannot_time_latency(published, reports):
    checks = run_gate(reports["openvino"], published["openvino"], latency_cases=[])
    latency = next(c for c in checks if c.name == "latency")
    assert latency.status == "fail" and "needs two bundles" in latency.detail
    assert not passed(checks)


@pytest.mark.slow
def test_forced_bundle_does_not_pass(litemedsam_exports, reports, tmp_path):
    from msam_export.publish import publish_bundle

    other = edited_report(reports["onnx"], tmp_path / "v.json", lambda r: r["candidate"].update(model="l0"))
    publish_bundle([(litemedsam_exports["onnx"], other)], tmp_path / "forced", allow_failed=True)
    checks = run_gate(tmp_path / "forced")
    assert statuses(checks)["provenance"] == "fail" and not passed(checks)


@pytest.mark.slow
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
