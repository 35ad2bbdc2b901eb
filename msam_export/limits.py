"""The accuracy limits every step holds an artifact to, in one place.

``verify`` fails an artifact below them, ``publish`` refuses it, ``gate`` fails the release,
and INT8 quantization aims at them (its default drift limit is the INT8 agreement limit).
An INT8 artifact drifts by design and has its own, looser limits; which limits apply is
read from the artifact's own record (``artifact.precision_of``), never from a name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Limits:
    """What a verify result must meet; None means "report only".

    min_agreement: smallest mean mask agreement DSC with the PyTorch FP32 reference.
    max_dsc_drop / max_nsd_drop: largest drop of mean DSC / NSD against ground truth
    (reference minus candidate, per-label scores).
    """

    min_agreement: float | None = None
    max_dsc_drop: float | None = None
    max_nsd_drop: float | None = None

    def failures(self, overall: dict[str, Any]) -> list[str]:
        """Why ``overall`` (verify's summary) fails these limits; a missing or NaN metric fails."""
        checks = [
            ("mean agreement DSC", self.min_agreement, overall.get("agreement_dsc"), 1),
            ("DSC drop", self.max_dsc_drop, overall.get("dsc_drop"), -1),
            ("NSD drop", self.max_nsd_drop, overall.get("nsd_drop"), -1),
        ]
        out = []
        for name, limit, value, sign in checks:
            if limit is None:
                continue
            if not isinstance(value, int | float) or not math.isfinite(value):
                out.append(f"{name} is missing or NaN (limit {limit})")
            elif sign * (value - limit) < 0:
                out.append(f"{name} {value:.4f} {'<' if sign > 0 else '>'} {limit}")
        return out

    def to_dict(self) -> dict[str, float | None]:
        return {
            "min_agreement": self.min_agreement,
            "max_dsc_drop": self.max_dsc_drop,
            "max_nsd_drop": self.max_nsd_drop,
        }


FLOAT_LIMITS = Limits(min_agreement=0.99, max_dsc_drop=0.005, max_nsd_drop=0.005)
INT8_LIMITS = Limits(min_agreement=0.95, max_dsc_drop=0.01, max_nsd_drop=0.01)
MAX_LATENCY_RATIO = 1.10


@dataclass(frozen=True)
class ReleaseLimits:
    """The limits of a release: float artifacts, INT8 artifacts, and the latency ratio."""

    float: Limits = FLOAT_LIMITS
    int8: Limits = INT8_LIMITS
    max_latency_ratio: float = MAX_LATENCY_RATIO

    def for_precision(self, precision: str) -> Limits:
        """The limits of an artifact of ``precision`` ("fp32", "fp16", "int8", ...)."""
        return self.int8 if precision == "int8" else self.float

    def with_changes(self, **changes: float | None) -> ReleaseLimits:
        """A copy with some limits replaced: ``min_agreement=...`` (float artifacts),
        ``min_agreement_int8=...`` (INT8), ``max_latency_ratio=...``; None keeps a limit."""
        float_, int8, ratio = self.float, self.int8, self.max_latency_ratio
        for key, value in changes.items():
            if value is None:
                continue
            if key == "max_latency_ratio":
                ratio = value
            elif key.endswith("_int8"):
                int8 = replace(int8, **{key[: -len("_int8")]: value})
            else:
                float_ = replace(float_, **{key: value})
        return ReleaseLimits(float_, int8, ratio)


DEFAULT_LIMITS = ReleaseLimits()
# INT8 quantization's default: the largest agreement drop that still meets the INT8 limit
DEFAULT_MAX_DRIFT = round(1.0 - INT8_LIMITS.min_agreement, 6)
