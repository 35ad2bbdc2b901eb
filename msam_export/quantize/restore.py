"""Budgeted accuracy control: keep the most harmful quantized modules in float.

NNCF's ``quantize_with_accuracy_control`` ranks every quantizer with the full
metric and re-ranks after each revert that does not help; on LiteMedSAM that took
17.5 minutes on 2 cores. Here the unit is a module (a TinyViT block, an MBConv, the
neck: the quantized operations that share an ONNX name path), modules are ranked
once by how much keeping each in float lowers the image-embedding error on a few
validation slices (no decoder needed), and then kept in float best-first, with the
full metric checked after each, until the goal is met or the budget (number of
modules, seconds) is spent. When the goal puts a floor under each modality and one is
below it, the ranking uses that modality's slices. Before that search, one measurement
with every module the budget allows in float tells whether the goal is reachable at all;
when it is not, the search is skipped and quantization stops at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .graph import groups, keep_in_float
from .validation import Drift, DriftMeter, Goal

Compile = Callable[[Any], Any]  # an OpenVINO model -> a backend that encodes with it


@dataclass(frozen=True)
class Budget:
    """Limits of the search: modules kept in float, wall time, slices used for ranking."""

    max_float_modules: int = 6
    max_seconds: float = 600.0
    ranking_slices: int = 3


DEFAULT_BUDGET = Budget()


@dataclass
class Restoration:
    """What accuracy control did."""

    ranking: list[tuple[str, float]] = field(default_factory=list)  # (module, embedding error if float)
    kept_float: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ranking_by_embedding_error": [{"module": m, "error_if_float": round(e, 6)} for m, e in self.ranking],
            "kept_float": self.kept_float,
            "history": self.history,
            "seconds": round(self.seconds, 1),
            "stopped_by": self.stopped_by,
        }


def rank_modules(
    quantized: Any, original: Any, meter: DriftMeter, compile_model: Compile, subset: list[int]
) -> list[tuple[str, float]]:
    """Modules sorted by the embedding error left when each alone is kept in float (lowest first)."""
    scores = []
    for module, names in groups(quantized).items():
        candidate = quantized.clone()
        keep_in_float(candidate, original, names)
        scores.append((module, meter.embedding_error(compile_model(candidate), subset)))
    return sorted(scores, key=lambda item: item[1])


def ranking_subset(meter: DriftMeter, modality: str | None, count: int) -> list[int]:
    """Validation slices to rank modules on: ``count`` of ``modality`` (when given and present),
    else the first ``count``."""
    chosen = [i for i, m in enumerate(meter.modalities) if m == modality] if modality else []
    return chosen[:count] or list(range(min(count, len(meter))))


def _scores(drift: Drift) -> dict[str, Any]:
    """A history entry's figures: the mean agreement and each modality's."""
    return {"agreement_dsc": round(drift.agreement, 6)} | (
        {"agreement_by_modality": {k: round(v, 6) for k, v in drift.per_modality.items()}} if drift.per_modality else {}
    )


def _weakest_change(goal: Goal, before: Drift, after: Drift) -> str:
    """With a modality floor, how the weakest modality moved, for the "why" of a kept module."""
    weakest = before.weakest()
    if goal.max_modality_drift is None or not weakest:
        return ""
    name, value = weakest
    return f"; {name} {value:.4f} -> {after.per_modality.get(name, float('nan')):.4f}"


def restore_accuracy(
    quantized: Any,
    original: Any,
    meter: DriftMeter,
    compile_model: Compile,
    goal: Goal,
    drift: Drift,
    budget: Budget = DEFAULT_BUDGET,
    on_step: Callable[[str], None] | None = None,
) -> tuple[Any, Drift, Restoration]:
    """Keeps modules of ``quantized`` in float until ``goal`` is met.

    Returns the best model found, its drift and what was done; never worse than the input.
    """
    start = time.perf_counter()
    report = Restoration()
    if budget.max_float_modules <= 0:
        report.stopped_by = "module budget (0)"
        return quantized, drift, report
    subset = ranking_subset(meter, goal.weakest_modality(drift), budget.ranking_slices)
    report.ranking = rank_modules(quantized, original, meter, compile_model, subset)
    module_names = groups(quantized)
    # the most the budget can do: every module it may keep in float, at once
    bound = quantized.clone()
    best_modules = [m for m, _ in report.ranking[: budget.max_float_modules]]
    keep_in_float(bound, original, [n for m in best_modules for n in module_names[m]])
    ceiling = meter.measure(compile_model(bound))
    report.history.append({"module": "+".join(best_modules), **_scores(ceiling)})
    if on_step:
        on_step(f"the {len(best_modules)} best-ranked modules in float: {goal.describe(ceiling)}")
    if not goal.met(ceiling):
        report.stopped_by = f"unreachable: {ceiling.agreement:.4f} with the whole budget in float"
        report.seconds = time.perf_counter() - start
        better = goal.rank(ceiling) > goal.rank(drift)
        return (bound, ceiling, report) if better else (quantized, drift, report)
    best, best_drift = quantized, drift
    current = quantized.clone()
    for module, _ in report.ranking:
        if goal.met(best_drift):
            report.stopped_by = "target met"
            break
        if len(report.kept_float) >= budget.max_float_modules:
            report.stopped_by = f"module budget ({budget.max_float_modules})"
            break
        if time.perf_counter() - start > budget.max_seconds:
            report.stopped_by = f"time budget ({budget.max_seconds:.0f} s)"
            break
        keep_in_float(current, original, module_names[module])
        measured = meter.measure(compile_model(current))
        report.history.append({"module": module, **_scores(measured)})
        gained = goal.rank(measured) > goal.rank(best_drift)
        if on_step:
            on_step(f"{module} in float: {goal.describe(measured)} ({'kept' if gained else 'undone, no gain'})")
        if gained:
            report.kept_float.append(
                {
                    "module": module,
                    "operations": len(module_names[module]),
                    "why": f"embedding error rank {len(report.kept_float) + 1}; "
                    f"agreement {best_drift.agreement:.4f} -> {measured.agreement:.4f}"
                    + _weakest_change(goal, best_drift, measured),
                }
            )
            best, best_drift = current.clone(), measured
        else:  # did not help: undo it
            current = best.clone()
    else:
        report.stopped_by = "target met" if goal.met(best_drift) else "all modules tried"
    report.seconds = time.perf_counter() - start
    return best, best_drift, report
