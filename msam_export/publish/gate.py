"""``msam-export gate CURRENT [--baseline BASE]``: may this bundle replace the last one?

Exit codes: 0 every check passed, 1 a check failed (a regression, a missing/NaN metric, other
data), 2 unusable input (unreadable or tampered bundle, wrong schema)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifact import precision_of, read_record
from ..errors import MsamError
from ..files import PathLike
from ..limits import DEFAULT_LIMITS, ReleaseLimits
from .check import check_bundle
from .latency import measure_latency
from .manifest import MANIFEST_FILE, read_verify, verify_problems

Latency = Callable[[Path, Path, list[Path], int, int | None], dict[str, Any]]


@dataclass
class Check:
    """One line of the gate's verdict (one JUnit testcase)."""

    artifact: str
    name: str
    status: str  # "pass", "fail" or "skip"
    value: str = ""
    limit: str = ""
    detail: str = ""


@dataclass
class Evidence:
    """One artifact as the gate sees it: its verify report, what its weights are (from its
    export.json in a bundle, else from the report) and, from a bundle, its directory."""

    name: str
    report: dict[str, Any]
    precision: str = "fp32"
    directory: Path | None = None
    problems: list[str] = field(default_factory=list)


def load_evidence(path: Path, what: str) -> dict[str, Evidence]:
    """Artifacts of a bundle (integrity-checked first) or of a lone verify.json (named by its
    candidate's kind), by name. MsamError (exit 2) when the input is unusable."""
    path = Path(path)
    if not path.exists():
        raise MsamError(f"{what} {path}: no such file or directory")
    if path.is_file():
        report = read_verify(path)
        cand = report["candidate"]
        precision = str(cand.get("weights") or "fp32")
        name = str(cand.get("kind") or "candidate") + ("" if precision == "fp32" else f"-{precision}")
        return {name: Evidence(name, report, precision)}
    if not (path / MANIFEST_FILE).is_file():
        raise MsamError(f"{what} {path}: not a bundle (no {MANIFEST_FILE}) nor a verify.json")
    checked = check_bundle(path)
    manifest, bad = checked.manifest, checked.problems
    if bad:
        listed = ", ".join(f"{r.path} {r.status}" for r in bad[:3])
        raise MsamError(f"{what} {path}: fails its integrity check ({listed}); see `msam-export check {path}`")
    out = {}
    for name, entry in manifest["artifacts"].items():
        report = read_verify(path / entry["verify_json"])
        directory = path / entry["dir"]
        record = read_record(directory)
        out[name] = Evidence(name, report, precision_of(record), directory, verify_problems(record, report))
    return out


def pair_up(
    current: dict[str, Evidence], baseline: dict[str, Evidence] | None
) -> tuple[list[tuple[str, Evidence, Evidence | None]], list[Check]]:
    """(label, current, baseline) by artifact name; a lone artifact on each side pairs whatever its
    name. Baseline artifacts absent from CURRENT become failed checks."""
    if baseline is None:
        return [(name, ev, None) for name, ev in current.items()], []
    if len(current) == 1 and len(baseline) == 1:
        (cur_name, cur), (base_name, base) = next(iter(current.items())), next(iter(baseline.items()))
        label = cur_name if cur_name == base_name else f"{cur_name} vs {base_name}"
        return [(label, cur, base)], []
    pairs = [(name, ev, baseline.get(name)) for name, ev in current.items()]
    dropped = [
        Check(name, "present", "fail", detail="in the baseline bundle, not in the current one")
        for name in baseline
        if name not in current
    ]
    return pairs, dropped


def number(section: dict[str, Any] | None, key: str) -> float | None:
    """A finite metric, or None when it is absent, null, NaN or not a number."""
    value = (section or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _missing(section: dict[str, Any] | None, key: str) -> str:
    """Why ``number(section, key)`` is None, for the check's detail."""
    section = section or {}
    if key not in section:
        return f"{key} is missing"
    if section[key] is None:
        return f"{key} is null (NaN when verify wrote it)"
    return f"{key} is {section[key]!r} (NaN or not a number)"


def agreement_check(label: str, overall: dict[str, Any], limits: Any) -> Check:
    value = number(overall, "agreement_dsc")
    limit = f">= {limits.min_agreement}"
    if value is None:
        return Check(label, "agreement", "fail", "-", limit, _missing(overall, "agreement_dsc"))
    passed = value >= limits.min_agreement
    return Check(label, "agreement", "pass" if passed else "fail", f"{value:.4f}", limit, "mask DSC vs PyTorch FP32")


def drop_check(
    label: str, metric: str, current: dict[str, Any], baseline: dict[str, Any] | None, limit: float
) -> Check:
    """DSC or NSD: current vs baseline (candidate metric), or without a baseline the current
    artifact's own drop against its PyTorch reference."""
    key = metric.lower()
    limit_text = f"drop <= {limit}"
    if baseline is None:
        drop = number(current, f"{key}_drop")
        if drop is None:
            return Check(label, metric, "fail", "-", limit_text, _missing(current, f"{key}_drop"))
        detail = f"vs its PyTorch reference ({_fmt(number(current, f'reference_{key}'))} -> "
        detail += f"{_fmt(number(current, f'candidate_{key}'))})"
    else:
        now, before = number(current, f"candidate_{key}"), number(baseline, f"candidate_{key}")
        if now is None or before is None:
            side, section = ("", current) if now is None else ("baseline ", baseline)
            return Check(label, metric, "fail", "-", limit_text, side + _missing(section, f"candidate_{key}"))
        drop = before - now
        detail = f"vs baseline ({before:.4f} -> {now:.4f})"
    status = "pass" if drop <= limit else "fail"
    return Check(label, metric, status, f"{drop:+.4f}", limit_text, detail)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def cases_check(label: str, report: dict[str, Any]) -> Check:
    """Every case of the verify run was segmented (a failed case would bias the means)."""
    listed = len((report.get("data") or {}).get("cases") or [])
    done = number(report.get("overall"), "cases")
    errors = [r for r in report.get("cases") or [] if isinstance(r, dict) and "error" in r]
    passed = listed > 0 and done == listed and not errors
    detail = f"{len(errors)} case(s) failed in verify" if errors else "all cases verified"
    return Check(label, "cases", "pass" if passed else "fail", f"{_int(done)}/{listed}", "all", detail)


def _int(value: float | None) -> str:
    return "-" if value is None else str(int(value))


def data_check(label: str, current: dict[str, Any], baseline: dict[str, Any]) -> Check:
    """Both verified on byte-identical cases and ground truth (same fingerprint)."""
    now = (current.get("data") or {}).get("fingerprint")
    before = (baseline.get("data") or {}).get("fingerprint")
    value = f"{str(now)[:12]} / {str(before)[:12]}"
    if not now or not before:
        return Check(label, "data", "fail", value, "same", "data fingerprint missing: re-run verify")
    if now != before:
        return Check(label, "data", "fail", value, "same", "verified on different data: metrics not comparable")
    return Check(label, "data", "pass", value[:12], "same", "same cases and ground truth")


def provenance_check(label: str, evidence: Evidence) -> Check:
    if not evidence.problems:
        return Check(label, "provenance", "pass", "ok", "own verify", "verify.json is this artifact's, passed")
    return Check(label, "provenance", "fail", "forced", "own verify", "; ".join(evidence.problems))


def arithmetic_check(label: str, current: dict[str, Any], baseline: dict[str, Any]) -> Check:
    """Both verified with the same arithmetic: float, or INT8 of the same target, both run natively
    or both emulated (an emulation's results differ from the target CPU's by rounding)."""

    def arithmetic(report: dict[str, Any]) -> str:
        found = report.get("arithmetic") or {}
        if not found.get("int8"):
            return "float"
        return f"int8 for {found.get('target')}" + (" (emulated)" if found.get("emulated") else "")

    now, before = arithmetic(current), arithmetic(baseline)
    if now != before:
        return Check(label, "arithmetic", "fail", f"{now} / {before}", "same", "results of different arithmetic")
    return Check(label, "arithmetic", "pass", now, "same", "same arithmetic on both sides")


def accuracy_checks(label: str, current: Evidence, baseline: Evidence | None, limits: ReleaseLimits) -> list[Check]:
    """Provenance (bundles), cases, data identity and arithmetic (with a baseline), agreement, DSC,
    NSD (per-label scores, held to the limits of the current artifact's own weights)."""
    held_to = limits.for_precision(current.precision)
    report = current.report
    overall = report.get("overall") or {}
    base_overall = baseline.report.get("overall") if baseline else None
    checks = [provenance_check(label, current)] if current.directory is not None else []
    checks.append(cases_check(label, report))
    if baseline is not None:
        checks.append(data_check(label, report, baseline.report))
        checks.append(arithmetic_check(label, report, baseline.report))
    checks.append(agreement_check(label, overall, held_to))
    checks.append(drop_check(label, "DSC", overall, base_overall, held_to.max_dsc_drop))
    checks.append(drop_check(label, "NSD", overall, base_overall, held_to.max_nsd_drop))
    return checks


def latency_check(
    label: str,
    current: Evidence,
    baseline: Evidence | None,
    limits: ReleaseLimits,
    cases: list[Path] | None,
    repeats: int,
    threads: int | None,
    latency: Latency = measure_latency,
) -> Check:
    """current/baseline wall time, both re-run now on ``cases`` (None: latency not asked) by
    ``latency`` (``measure_latency``; tests give it a clock of their own)."""
    limit = f"<= {limits.max_latency_ratio}"
    if baseline is None:
        return Check(label, "latency", "skip", "-", limit, "no baseline artifact to compare with")
    if cases is None:
        return Check(label, "latency", "skip", "-", limit, "disabled (--no-latency)")
    if current.directory is None or baseline.directory is None:
        return Check(label, "latency", "fail", "-", limit, "needs two bundles to run (a verify.json has no artifact)")
    result = latency(current.directory, baseline.directory, cases, repeats, threads)
    ratio = result["ratio_best"]
    detail = (
        f"best of {result['repeats']} on {len(cases)} case(s): {result['current_ms_best']:.0f} vs "
        f"{result['baseline_ms_best']:.0f} ms (median ratio {result['ratio_median']:.3f})"
    )
    if not math.isfinite(ratio):
        return Check(label, "latency", "fail", "-", limit, "no usable timing: " + detail)
    status = "pass" if ratio <= limits.max_latency_ratio else "fail"
    return Check(label, "latency", status, f"{ratio:.3f}", limit, detail)


def run_gate(
    current: Path,
    baseline: Path | None = None,
    limits: ReleaseLimits = DEFAULT_LIMITS,
    latency_cases: list[Path] | None = None,
    repeats: int = 3,
    threads: int | None = None,
    latency: Latency = measure_latency,
) -> list[Check]:
    """Every check of CURRENT against BASE, or against its own PyTorch reference without one.
    Both are bundles or verify.json files; the latency comparison needs two bundles (``latency_cases``
    None skips it)."""
    cur = load_evidence(current, "current")
    base = load_evidence(baseline, "baseline") if baseline is not None else None
    pairs, checks = pair_up(cur, base)
    for label, cur_ev, base_ev in pairs:
        checks += accuracy_checks(label, cur_ev, base_ev, limits)
        checks.append(latency_check(label, cur_ev, base_ev, limits, latency_cases, repeats, threads, latency))
    return checks


def passed(checks: list[Check]) -> bool:
    """True when no check failed (skipped checks are reported, not failed)."""
    return bool(checks) and all(c.status != "fail" for c in checks)


@dataclass
class GateResult:
    """The gate's checks and verdict (and the JUnit file, when one was written)."""

    checks: list[Check]
    junit: Path | None = None

    @property
    def passed(self) -> bool:
        return passed(self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


def gate(
    current: PathLike,
    *,
    baseline: PathLike | None = None,
    limits: ReleaseLimits = DEFAULT_LIMITS,
    latency_data: PathLike | None = None,
    latency: bool = True,
    repeats: int = 3,
    threads: int | None = None,
    junit: PathLike | None = None,
) -> GateResult:
    """May bundle ``current`` replace ``baseline``? Without a baseline: each artifact against its
    own PyTorch reference. With one, latency is re-measured here, interleaved, on ``latency_data``
    (default: the bundled samples) unless ``latency`` is False. ``junit`` writes a JUnit XML
    (also when the input is unusable, then with one error)."""
    from ..data import SAMPLES, data_dirs, list_cases
    from .junit import write_junit

    try:
        cases = None
        if baseline is not None and latency:
            cases = list_cases(data_dirs(latency_data or SAMPLES)[0])
        checks = run_gate(Path(current), Path(baseline) if baseline else None, limits, cases, repeats, threads)
    except MsamError as exc:
        if junit:
            write_junit(Path(junit), [], error=str(exc))
        raise
    if junit:
        write_junit(Path(junit), checks)
    return GateResult(checks, Path(junit) if junit else None)
