"""Latency of two artifacts measured now, on this machine, on the same cases, interleaved:
the only latency comparison the gate trusts (stored times come from other machines, and a
verify spread over a cluster measures each case on whichever worker ran it)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data import Case, load_case

Runner = Callable[[Case], float]  # segments a case, returns its wall time in ms
SIDES = ("baseline", "current")


def interleaved_latency(runners: dict[str, Runner], cases: list[Case], repeats: int = 3) -> dict[str, Any]:
    """Runs every case with both runners ``repeats`` times, alternating which goes first on each
    round so a slow phase of a shared machine hits both alike (one untimed warm-up case each
    first). Per case the best and the median run count; the ratios are current/baseline of
    their sums over cases."""
    repeats = max(1, repeats)
    for side in SIDES:
        runners[side](cases[0])  # warm-up: allocations, OpenVINO's first compilation
    times: dict[str, list[list[float]]] = {side: [[] for _ in cases] for side in SIDES}
    for r in range(repeats):
        order = SIDES if r % 2 == 0 else SIDES[::-1]
        for i, case in enumerate(cases):
            for side in order:
                times[side][i].append(runners[side](case))
    best = {side: sum(min(t) for t in per_case) for side, per_case in times.items()}
    median = {side: sum(statistics.median(t) for t in per_case) for side, per_case in times.items()}
    return {
        "cases": [c.name for c in cases],
        "repeats": repeats,
        "current_ms_best": best["current"],
        "baseline_ms_best": best["baseline"],
        "ratio_best": _ratio(best["current"], best["baseline"]),
        "current_ms_median": median["current"],
        "baseline_ms_median": median["baseline"],
        "ratio_median": _ratio(median["current"], median["baseline"]),
    }


def measure_latency(
    current: Path, baseline: Path, cases: list[Path], repeats: int = 3, threads: int | None = None
) -> dict[str, Any]:
    """``interleaved_latency`` of two artifact directories, opened here."""
    from ..runtime import open_model

    runners = {}
    for side, path in (("baseline", baseline), ("current", current)):
        predictor = open_model(path, threads=threads, need="latency").predictor()
        runners[side] = lambda case, p=predictor: p.segment(case).wall_ms
    return interleaved_latency(runners, [load_case(p) for p in cases], repeats) | {"threads": threads}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else math.nan
