"""``msam-export publish CKPT --formats onnx,openvino --data DIR -o BUNDLE``: export each format,
verify it against the checkpoint, publish the bundle.

Formats are a registry (``BUILDERS``): a name maps to a callable that writes one artifact
directory, so a new format is one entry."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MsamError
from ..progress import Steps
from ..verify.report import Thresholds
from .gate import GateLimits


def verify_thresholds(limits: GateLimits) -> Thresholds:
    """The verify thresholds that match the gate's limits."""
    return Thresholds(limits.min_agreement, limits.max_dsc_drop, limits.max_nsd_drop)


DEFAULT_THRESHOLDS = verify_thresholds(GateLimits())
# INT8 drifts by design: held to the gate's INT8 limits (GateLimits.*_int8) unless given its own.
INT8_THRESHOLDS = verify_thresholds(GateLimits().for_artifact("int8"))


def thresholds_for(name: str, thresholds: Thresholds | dict[str, Thresholds]) -> Thresholds:
    """The verify thresholds of format ``name``."""
    if isinstance(thresholds, dict):
        return thresholds.get(name, INT8_THRESHOLDS if "int8" in name else DEFAULT_THRESHOLDS)
    return INT8_THRESHOLDS if "int8" in name else thresholds


@dataclass
class BuildContext:
    """What every builder may use; ``built`` maps the formats already written in this run to
    their directories (so openvino converts the ONNX export instead of tracing again)."""

    checkpoint: Path
    variant: str | None = None
    trust_pickle: bool = False
    calib: Path | None = None
    max_drift: float = 0.03
    steps: Steps = field(default_factory=lambda: Steps(quiet=True))
    built: dict[str, Path] = field(default_factory=dict)


Builder = Callable[[BuildContext, Path], None]


def build_onnx(ctx: BuildContext, out_dir: Path) -> None:
    """encoder.onnx + decoder.onnx (``export.pipeline.export_onnx``)."""
    from ..export.pipeline import export_onnx

    export_onnx(ctx.checkpoint, out_dir, ctx.variant, ctx.trust_pickle, steps=ctx.steps)


def build_openvino(ctx: BuildContext, out_dir: Path) -> None:
    """OpenVINO IR FP32, converted from this run's ONNX export when there is one."""
    from ..export.pipeline import export_openvino

    src = ctx.built.get("onnx", ctx.checkpoint)
    export_openvino(src, out_dir, "fp32", ctx.variant, ctx.trust_pickle, steps=ctx.steps)


def build_openvino_int8(ctx: BuildContext, out_dir: Path) -> None:
    """OpenVINO INT8 through ``msam_export.quantize.quantize_openvino`` (needs ``calib``)."""
    from ..quantize import quantize_openvino

    if ctx.calib is None:
        raise MsamError("openvino-int8 needs a calibration file (--calib, from `msam-export calibrate`)")
    src = ctx.built.get("openvino", ctx.checkpoint)
    quantize_openvino(src, out_dir, ctx.calib, ctx.max_drift, ctx.variant, ctx.trust_pickle, steps=ctx.steps)


BUILDERS: dict[str, Builder] = {
    "onnx": build_onnx,
    "openvino": build_openvino,
    "openvino-int8": build_openvino_int8,
}


def parse_formats(text: str) -> list[str]:
    """``"onnx,openvino"`` -> ["onnx", "openvino"]; MsamError for an unknown or repeated name."""
    formats = [f.strip() for f in text.split(",") if f.strip()]
    if not formats:
        raise MsamError("--formats is empty")
    unknown = [f for f in formats if f not in BUILDERS]
    if unknown:
        raise MsamError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    if len(set(formats)) != len(formats):
        raise MsamError(f"--formats names a format twice: {text}")
    return formats


def publish_from_checkpoint(
    checkpoint: Path,
    formats: list[str],
    data: Path,
    out_dir: Path,
    *,
    gts: Path | None = None,
    calib: Path | None = None,
    thresholds: Thresholds | dict[str, Thresholds] = DEFAULT_THRESHOLDS,
    repeats: int = 1,
    threads: int | None = None,
    variant: str | None = None,
    trust_pickle: bool = False,
    force: bool = False,
    overwrite: bool = False,
    max_drift: float = 0.03,
    steps: Steps | None = None,
    on_case: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Builds each format in a work directory beside ``out_dir``, verifies it against the
    checkpoint on ``data`` and publishes them together; returns the manifest."""
    from ..data import list_cases
    from ..runtime import open_model
    from ..runtime.segment import data_dirs
    from ..verify.render import write_report
    from ..verify.report import run_verify
    from .bundle import check_bundle_output, publish_bundle

    out_dir = Path(out_dir)
    check_bundle_output(out_dir, overwrite)
    for name in formats:
        if name not in BUILDERS:
            raise MsamError(f"unknown format {name!r}; choose from {', '.join(BUILDERS)}")
    if not Path(checkpoint).is_file():
        raise MsamError(f"{checkpoint}: not a checkpoint file")
    imgs, gts_dir = data_dirs(Path(data), gts)
    cases = list_cases(imgs)
    if gts_dir is None:
        raise MsamError(f"{data}: no gts/ beside imgs/; verify needs ground truth for DSC/NSD (or pass --gts)")
    ctx = BuildContext(
        Path(checkpoint), variant, trust_pickle, calib, max_drift=max_drift, steps=steps or Steps(quiet=True)
    )
    reference = open_model(ctx.checkpoint, threads, variant=variant, trust_pickle=trust_pickle, need="verify")
    pairs = []
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.work-", dir=out_dir.resolve().parent) as work:
        for name in formats:
            artifact = Path(work) / name
            BUILDERS[name](ctx, artifact)
            ctx.built[name] = artifact
            candidate = open_model(artifact, threads, need="verify")
            with ctx.steps.step("verify", f"{name} on {len(cases)} case(s)"):
                limits = thresholds_for(name, thresholds)
                report = run_verify(candidate, reference, cases, gts_dir, repeats, limits, on_case)
            write_report(Path(work) / f"{name}.verify.json", report)
            pairs.append((artifact, Path(work) / f"{name}.verify.json"))
        return publish_bundle(pairs, out_dir, force, overwrite)
