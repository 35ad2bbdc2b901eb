"""demo: its case sets and its summary table (the full run is README command 1)."""

from __future__ import annotations

import json

import pytest

from msam_export.data import SAMPLES
from msam_export.demo import DEMO_CASES, QUICK_CASES, demo_cases, summary_markdown, summary_rows
from msam_export.errors import MsamError


def test_demo_cases_are_bundled():
    assert [p.name for p in demo_cases(DEMO_CASES)] == list(DEMO_CASES)
    assert set(QUICK_CASES) < set(DEMO_CASES)
    assert any(name.startswith("3D") for name in DEMO_CASES)
    assert all(name.startswith("2D") for name in QUICK_CASES)


def test_missing_case_is_named(tmp_path):
    with pytest.raises(MsamError, match="nope.npz"):
        demo_cases(("nope.npz",), data=SAMPLES)


def test_summary_rows_and_table(tmp_path):
    overall = {
        "agreement_dsc": 0.98,
        "reference_dsc": 0.8,
        "candidate_dsc": 0.79,
        "reference_nsd": 0.6,
        "candidate_nsd": 0.59,
        "wall_ms_median": 500.0,
        "reference_wall_ms_median": 1500.0,
    }
    verify = tmp_path / "v.json"
    verify.write_text(json.dumps({"overall": overall}))
    checkpoint = tmp_path / "ckpt.pth"
    checkpoint.write_bytes(b"x" * 4_000_000)
    rows = summary_rows({"openvino-int8": verify}, {"openvino-int8": 2_000_000}, checkpoint)
    assert [r["artifact"] for r in rows] == ["pytorch (reference)", "openvino-int8"]
    assert rows[1]["speedup"] == pytest.approx(3.0) and rows[1]["size_mb"] == pytest.approx(2.0)
    assert rows[0]["dsc"] == 0.8 and rows[1]["dsc"] == 0.79
    rows[1]["published"] = "yes"
    text = summary_markdown(rows, gate_passed=False)
    assert "| openvino-int8 | 2.0 | 0.9800 | 0.7900 | 0.5900 | 500 | 3.00x | yes |" in text
    assert text.rstrip().endswith("gate: FAILED")


def test_a_format_that_was_not_built_gets_a_row():
    from msam_export.demo import _not_built_row

    row = _not_built_row("openvino-int8", "INT8 agreement 0.94 < 0.95")
    text = summary_markdown([row], gate_passed=True)
    assert "| openvino-int8 | nan |" in text and "not built: INT8 agreement 0.94 < 0.95" in text
