"""Latency of two artifacts measured now, on this machine, on the same cases, interleaved:
the only latency comparison the gate trusts (stored absolute times come from other machines)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from ..data import load_case


def interleaved_latency(
    current: Path, baseline: Path, cases: list[Path], repeats: int = 3, threads: int | None = None
) -> dict[str, Any]:
    """Segments every case with both artifacts, ``repeats`` times, alternating which goes first
    on each case so a slow phase of a shared machine hits both alike (one untimed warm-up case
    each first). Per case the best and the median run count; the ratios are current/baseline of
    their sums over cases."""
    from ..runtime import Predictor, open_model

    repeats = max(1, repeats)
    loaded = [load_case(p) for p in cases]
    predictors = {}
    for side, path in (("baseline", baseline), ("current", current)):
        opened = open_model(path, threads, need="latency")
        predictors[side] = Predictor(opened.backend, opened.spec)
        predictors[side].segment(loaded[0])  # warm-up: allocations, OpenVINO's first compilation
    times: dict[str, list[list[float]]] = {side: [[] for _ in loaded] for side in predictors}
    for r in range(repeats):
        order = ("baseline", "current") if r % 2 == 0 else ("current", "baseline")
        for i, case in enumerate(loaded):
            for side in order:
                times[side][i].append(predictors[side].segment(case).wall_ms)
    best = {side: sum(min(t) for t in per_case) for side, per_case in times.items()}
    median = {side: sum(statistics.median(t) for t in per_case) for side, per_case in times.items()}
    return {
        "cases": [p.name for p in cases],
        "repeats": repeats,
        "threads": threads,
        "current_ms_best": best["current"],
        "baseline_ms_best": best["baseline"],
        "ratio_best": _ratio(best["current"], best["baseline"]),
        "current_ms_median": median["current"],
        "baseline_ms_median": median["baseline"],
        "ratio_median": _ratio(median["current"], median["baseline"]),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else math.nan
