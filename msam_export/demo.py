"""``msam-export demo``: the embedded default end to end.

Real LiteMedSAM weights and the bundled real sample cases -> ONNX -> OpenVINO FP32 ->
calibration slices -> OpenVINO INT8 -> verify (one PyTorch reference run shared by all
three) -> publish -> gate, then one table. Every step is the library function the
matching command calls.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MsamError, ParityError
from .files import check_output_dir, staged_output
from .progress import Steps

SAMPLES = Path(__file__).resolve().parent / "samples"
# The demo verifies on every 2D sample and the smallest 3D one (20 slices to encode): well
# under 15 minutes on 2 cores. --quick (CI) drops the 3D case; --all-cases takes all nine.
# Calibration slices always come from all bundled samples.
DEMO_CASES = (
    "2DBox_Fundus_CHASEDB1-Image01L.npz",
    "2DBox_Microscope_AxonSEM-rat2data5.npz",
    "2DBox_Microscope_DSB2018-stardist.npz",
    "2DBox_US_HC18-000.npz",
    "2DBox_US_HC18-010.npz",
    "3DBox_CT_MSDSpleen-spleen2.npz",
)
QUICK_CASES = DEMO_CASES[:5]
FORMATS = ("onnx", "openvino", "openvino-int8")


@dataclass(frozen=True)
class DemoOptions:
    cases: tuple[str, ...] = DEMO_CASES
    calib_slices: int = 40
    max_drift: float = 0.05
    max_float_modules: int = 2
    threads: int | None = None


def demo_cases(names: tuple[str, ...], data: Path = SAMPLES) -> list[Path]:
    paths = [data / "imgs" / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise MsamError(f"bundled sample cases missing: {', '.join(missing)} (reinstall msam-export)")
    return paths


def _build(fmt: str, work: Path, checkpoint: Path, calib: Path, options: DemoOptions, steps: Steps) -> Path:
    from .export.pipeline import export_onnx, export_openvino
    from .quantize import Budget, quantize_openvino

    out = work / fmt
    if fmt == "onnx":
        export_onnx(checkpoint, out, steps=steps)
    elif fmt == "openvino":
        export_openvino(work / "onnx", out, steps=steps)
    else:
        budget = Budget(max_float_modules=options.max_float_modules, max_seconds=300)
        quantize_openvino(
            work / "openvino", out, calib, options.max_drift, steps=steps, budget=budget, threads=options.threads
        )
    return out


def _calibrate(cases: list[Path], checkpoint: Path, path: Path, options: DemoOptions, steps: Steps) -> None:
    from .calibrate import build_calibration, save_calibration
    from .checkpoints import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    with steps.step("calibrate", f"{options.calib_slices} slices of {len(cases)} bundled sample cases"):
        calib, _ = build_calibration(cases, loaded.model, loaded.spec, options.calib_slices, 0, 0.25)
        save_calibration(path, calib)


def run_demo(
    out_dir: Path,
    options: DemoOptions = DemoOptions(),
    force: bool = False,
    steps: Steps | None = None,
    on_case: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Runs the whole chain into ``out_dir`` (bundle/, verify/, calib.npz, gate.xml, summary.md);
    returns {"rows": table rows, "gate": checks, "passed": bool}.

    Only artifacts that pass their verify are published (as ``publish`` does without
    ``--force``); the table says why any other was withheld. The gate then checks the bundle."""
    from .checkpoints import default_checkpoint_path
    from .publish import GateLimits, passed, publish_bundle, run_gate
    from .publish.junit import write_junit
    from .publish.oneshot import verify_thresholds
    from .runtime import open_model
    from .verify import run_verify
    from .verify.render import write_report

    steps = steps or Steps(quiet=True)
    check_output_dir(out_dir, force)
    checkpoint = default_checkpoint_path()
    cases = demo_cases(options.cases)
    limits = GateLimits()
    with staged_output(out_dir, force) as stage, tempfile.TemporaryDirectory(dir=stage.parent) as tmp:
        work = Path(tmp)
        _calibrate(sorted((SAMPLES / "imgs").glob("*.npz")), checkpoint, stage / "calib.npz", options, steps)
        reference = open_model(checkpoint, options.threads, need="verify")
        cache: dict = {}
        pairs = []
        (stage / "verify").mkdir()
        not_built: dict[str, str] = {}
        for fmt in FORMATS:
            try:
                artifact = _build(fmt, work, checkpoint, stage / "calib.npz", options, steps)
            except ParityError as exc:  # e.g. INT8 beyond --max-drift: report it, go on
                steps.note(f"[yellow]{fmt} not built: {exc}[/]")
                not_built[fmt] = str(exc)
                continue
            thresholds = verify_thresholds(limits.for_artifact(fmt))
            candidate = open_model(artifact, options.threads, need="verify")
            with steps.step("verify", f"{fmt} on {len(cases)} cases"):
                report = run_verify(candidate, reference, cases, SAMPLES / "gts", 1, thresholds, on_case, cache)
            write_report(stage / "verify" / f"{fmt}.json", report)
            pairs.append((artifact, stage / "verify" / f"{fmt}.json"))
        verdicts = {a.name: json.loads(v.read_text())["verdict"] for a, v in pairs}
        publishable = [(a, v) for a, v in pairs if verdicts[a.name]["passed"]]
        if not publishable:
            raise MsamError("no artifact passed verify; nothing to publish (see OUTPUT/verify/*.json)")
        with steps.step("publish", f"bundle/: {', '.join(a.name for a, _ in publishable)}"):
            manifest = publish_bundle(publishable, stage / "bundle")
        with steps.step("gate", "bundle/ against its PyTorch reference"):
            checks = run_gate(stage / "bundle", None, limits)
        write_junit(stage / "gate.xml", checks)
        rows = summary_rows(manifest, pairs, checkpoint)
        for row in rows[1:]:
            verdict = verdicts[row["artifact"]]
            row["published"] = "yes" if verdict["passed"] else "withheld: " + "; ".join(verdict["failures"])
        rows += [_not_built_row(fmt, reason) for fmt, reason in not_built.items()]
        (stage / "summary.md").write_text(summary_markdown(rows, passed(checks)))
    return {"rows": rows, "gate": checks, "passed": passed(checks)}


def _not_built_row(fmt: str, reason: str) -> dict[str, Any]:
    nan = float("nan")
    metrics = dict.fromkeys(("size_mb", "agreement", "dsc", "nsd", "case_ms", "speedup"), nan)
    return {"artifact": fmt, **metrics, "published": f"not built: {reason}"}


def _size_mb(folder: Path, suffixes: tuple[str, ...] = (".onnx", ".bin", ".xml")) -> float:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in suffixes) / 1e6


def summary_rows(manifest: dict[str, Any], pairs: list[tuple[Path, Path]], checkpoint: Path) -> list[dict[str, Any]]:
    """One row per artifact plus the PyTorch reference: size, agreement, DSC/NSD, latency, speed-up."""
    rows = []
    for artifact, verify_path in pairs:
        overall = json.loads(verify_path.read_text())["overall"]
        if not rows:
            rows.append(
                {
                    "artifact": "pytorch (reference)",
                    "size_mb": checkpoint.stat().st_size / 1e6,
                    "agreement": 1.0,
                    "dsc": overall["reference_dsc"],
                    "nsd": overall["reference_nsd"],
                    "case_ms": overall["reference_wall_ms_median"],
                    "speedup": 1.0,
                    "published": "-",
                }
            )
        rows.append(
            {
                "artifact": artifact.name,
                "size_mb": _size_mb(artifact),
                "agreement": overall["agreement_dsc"],
                "dsc": overall["candidate_dsc"],
                "nsd": overall["candidate_nsd"],
                "case_ms": overall["wall_ms_median"],
                "speedup": overall["reference_wall_ms_median"] / overall["wall_ms_median"],
                "published": "",
            }
        )
    return rows


COLUMNS = (
    ("artifact", "artifact", "{}"),
    ("size_mb", "size MB", "{:.1f}"),
    ("agreement", "agreement DSC", "{:.4f}"),
    ("dsc", "DSC vs GT", "{:.4f}"),
    ("nsd", "NSD vs GT", "{:.4f}"),
    ("case_ms", "case ms (median)", "{:.0f}"),
    ("speedup", "speed-up vs PyTorch", "{:.2f}x"),
    ("published", "published", "{}"),
)


def summary_markdown(rows: list[dict[str, Any]], gate_passed: bool) -> str:
    lines = ["| " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |")
    lines.append("")
    lines.append(f"gate: {'PASSED' if gate_passed else 'FAILED'}")
    return "\n".join(lines) + "\n"
