"""``demo``: ``publish`` from the embedded default checkpoint, plus a calibration, then ``gate``.

Real LiteMedSAM weights and the bundled real sample cases -> calibration slices -> ONNX ->
OpenVINO FP32 -> OpenVINO INT8 -> verify (one PyTorch reference run shared by all three) ->
publish (what passed) -> gate, then one table. Every default (limits, drift, budget) is the
one the commands use.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import SAMPLES
from .errors import MsamError
from .files import PathLike, staged_output
from .progress import Steps

# The demo verifies on every 2D sample and the smallest 3D one (20 slices to encode); --quick
# (CI) drops the 3D case; --all-cases takes all nine. Calibration always uses all samples.
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


@dataclass
class DemoResult:
    """The summary rows, the gate's checks and verdict, and where everything is."""

    output: Path
    rows: list[dict[str, Any]]
    gate: list[Any]
    passed: bool


def demo_cases(names: tuple[str, ...], data: Path = SAMPLES) -> list[Path]:
    paths = [data / "imgs" / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise MsamError(f"bundled sample cases missing: {', '.join(missing)} (reinstall msam-export)")
    return paths


def run_demo(
    output: PathLike = "msam-demo",
    *,
    cases: tuple[str, ...] = DEMO_CASES,
    calib_slices: int = 40,
    threads: int | None = None,
    overwrite: bool = False,
    progress: Steps | None = None,
    on_case: Callable[[str], None] | None = None,
) -> DemoResult:
    """Runs the whole chain into ``output``: ``bundle/`` (what passed verify), ``verify/*.json``
    and ``*.html``, ``calib.npz``, ``gate.xml`` (JUnit) and ``summary.md``."""
    from .calibrate import calibrate
    from .checkpoints import default_checkpoint_path
    from .publish import passed, publish, run_gate
    from .publish.junit import write_junit

    steps = progress or Steps(quiet=True)
    checkpoint = default_checkpoint_path()
    demo_cases(cases)
    output = Path(output)
    with staged_output(output, overwrite) as stage:
        with steps.step("calibrate", f"{calib_slices} slices of the bundled samples"):
            calibrate(SAMPLES, stage / "calib.npz", model=checkpoint, n=calib_slices, val_fraction=0.25)
        release = publish(
            checkpoint,
            stage / "bundle",
            formats=FORMATS,
            data=SAMPLES,
            cases=cases,
            calibration=stage / "calib.npz",
            threads=threads,
            withhold_failed=True,
            verify_dir=stage / "verify",
            progress=steps,
            on_case=on_case,
        )
        with steps.step("gate", "bundle/ against its PyTorch reference"):
            checks = run_gate(stage / "bundle")
        write_junit(stage / "gate.xml", checks)
        rows = summary_rows(release.verified, release.sizes, checkpoint)
        for row in rows[1:]:
            reason = release.withheld.get(row["artifact"])
            row["published"] = f"withheld: {reason}" if reason else "yes"
        rows += [_not_built_row(fmt, reason) for fmt, reason in release.not_built.items()]
        (stage / "summary.md").write_text(summary_markdown(rows, passed(checks)))
    return DemoResult(output, rows, checks, passed(checks))


def _not_built_row(fmt: str, reason: str) -> dict[str, Any]:
    nan = float("nan")
    metrics = dict.fromkeys(("size_mb", "agreement", "dsc", "nsd", "case_ms", "speedup"), nan)
    return {"artifact": fmt, **metrics, "published": f"not built: {reason}"}


def summary_rows(verified: dict[str, Path], sizes: dict[str, int], checkpoint: Path) -> list[dict[str, Any]]:
    """One row per verified artifact plus the PyTorch reference: size of the graph files,
    agreement, DSC/NSD, latency, speed-up."""
    rows = []
    for name, verify_path in verified.items():
        overall = json.loads(Path(verify_path).read_text())["overall"]
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
                "artifact": name,
                "size_mb": sizes.get(name, float("nan")) / 1e6,
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
