"""The limits: one source for verify, publish, gate and INT8's default drift."""

from __future__ import annotations

import math

from msam_export.limits import DEFAULT_LIMITS, DEFAULT_MAX_DRIFT, FLOAT_LIMITS, INT8_LIMITS, Limits


def test_failures_name_the_metric_and_nan_never_passes():
    assert Limits(min_agreement=1.01).failures({"agreement_dsc": 0.99}) == ["mean agreement DSC 0.9900 < 1.01"]
    assert Limits(max_dsc_drop=0.0, max_nsd_drop=0.0).failures({"dsc_drop": math.nan}) == [
        "DSC drop is missing or NaN (limit 0.0)",
        "NSD drop is missing or NaN (limit 0.0)",
    ]
    assert Limits().failures({}) == []


def test_limits_per_precision_and_changes():
    assert DEFAULT_LIMITS.for_precision("int8") is INT8_LIMITS
    assert DEFAULT_LIMITS.for_precision("fp16") is FLOAT_LIMITS
    changed = DEFAULT_LIMITS.with_changes(min_agreement_int8=0.9, max_dsc_drop=0.002, max_nsd_drop_int8=None)
    assert changed.int8.min_agreement == 0.9 and changed.int8.max_nsd_drop == INT8_LIMITS.max_nsd_drop
    assert changed.float.max_dsc_drop == 0.002 and changed.float.min_agreement == FLOAT_LIMITS.min_agreement


def test_int8_drift_default_is_the_int8_agreement_limit():
    assert DEFAULT_MAX_DRIFT == round(1 - INT8_LIMITS.min_agreement, 6) == 0.05
