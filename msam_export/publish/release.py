"""``publish``: verified artifacts into a bundle, from artifact directories or from a checkpoint.

From a checkpoint, each requested format is built (a registry: a name -> a builder that writes
one artifact directory), verified against the checkpoint on the data and published together.
``demo`` is this with the embedded default, the bundled samples and a calibration made from them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from ..errors import MsamError, ParityError
from ..files import PathLike
from ..limits import DEFAULT_LIMITS, DEFAULT_MAX_DRIFT, ReleaseLimits
from ..progress import Steps
from .bundle import artifact_pairs, check_bundle_output, publish_bundle


@dataclass
class BuildContext:
    """What every builder may use; ``built`` maps the formats already written in this run to
    their directories (so openvino converts the ONNX export instead of tracing again)."""

    checkpoint: Path
    variant: str | None = None
    trust_pickle: bool = False
    calibration: Path | None = None
    max_drift: float = DEFAULT_MAX_DRIFT
    max_modality_drift: float | None = None
    target: str = "auto"
    threads: int | None = None
    steps: Steps = field(default_factory=lambda: Steps(quiet=True))
    built: dict[str, Path] = field(default_factory=dict)


Builder = Callable[[BuildContext, Path], None]


def build_onnx(ctx: BuildContext, out_dir: Path) -> None:
    """encoder.onnx + decoder.onnx (``export_onnx``)."""
    from ..export import export_onnx

    export_onnx(ctx.checkpoint, out_dir, variant=ctx.variant, trust_pickle=ctx.trust_pickle, progress=ctx.steps)


def build_openvino(ctx: BuildContext, out_dir: Path) -> None:
    """OpenVINO IR FP32, converted from this run's ONNX export when there is one."""
    from ..export import export_openvino

    source = ctx.built.get("onnx", ctx.checkpoint)
    export_openvino(source, out_dir, variant=ctx.variant, trust_pickle=ctx.trust_pickle, progress=ctx.steps)


def build_openvino_int8(ctx: BuildContext, out_dir: Path) -> None:
    """OpenVINO INT8 (``quantize_openvino``; needs a calibration file)."""
    from ..quantize import quantize_openvino

    if ctx.calibration is None:
        raise MsamError("openvino-int8 needs a calibration file (--calib, from `msam-export calibrate`)")
    quantize_openvino(
        ctx.built.get("openvino", ctx.checkpoint),
        out_dir,
        calibration=ctx.calibration,
        max_drift=ctx.max_drift,
        max_modality_drift=ctx.max_modality_drift,
        target=ctx.target,
        threads=ctx.threads,
        variant=ctx.variant,
        trust_pickle=ctx.trust_pickle,
        progress=ctx.steps,
    )


BUILDERS: dict[str, Builder] = {
    "onnx": build_onnx,
    "openvino": build_openvino,
    "openvino-int8": build_openvino_int8,
}
DEFAULT_FORMATS = ("onnx", "openvino")


def parse_formats(text: str | Sequence[str]) -> list[str]:
    """``"onnx,openvino"`` (or a list) -> ["onnx", "openvino"]; MsamError for an unknown or repeated name."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = [f.strip() for f in items if f.strip()]
    if not formats:
        raise MsamError("--formats is empty")
    unknown = [f for f in formats if f not in BUILDERS]
    if unknown:
        raise MsamError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    if len(set(formats)) != len(formats):
        raise MsamError(f"--formats names a format twice: {', '.join(formats)}")
    return formats


@dataclass
class Release:
    """What ``publish`` did: the bundle (None when nothing was published), its manifest, and per
    artifact its verify report, its size, and why it was not published (failed verify, not built)."""

    bundle: Path | None
    manifest: dict[str, Any] | None
    verified: dict[str, Path] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # bytes of each built artifact's graph files
    withheld: dict[str, str] = field(default_factory=dict)
    not_built: dict[str, str] = field(default_factory=dict)


def publish(
    sources: PathLike | Sequence[PathLike],
    output: PathLike,
    *,
    verify_files: Sequence[PathLike] | None = None,
    formats: str | Sequence[str] | None = None,
    data: PathLike | None = None,
    gts: PathLike | None = None,
    cases: Sequence[str] | None = None,
    calibration: PathLike | None = None,
    limits: ReleaseLimits = DEFAULT_LIMITS,
    max_drift: float = DEFAULT_MAX_DRIFT,
    max_modality_drift: float | None = None,
    target: str = "auto",
    repeats: int = 1,
    threads: int | None = None,
    variant: str | None = None,
    trust_pickle: bool = False,
    allow_failed: bool = False,
    withhold_failed: bool = False,
    overwrite: bool = False,
    html: bool = True,
    verify_dir: PathLike | None = None,
    progress: Steps | None = None,
    on_case: Callable[[str], None] | None = None,
) -> Release:
    """Publishes a bundle at ``output``.

    ``sources`` are artifact directories (each with its verify.json, or ``verify_files`` in the
    same order), or one checkpoint file: then each of ``formats`` (default onnx, openvino) is
    built, verified on ``data`` (optionally only the named ``cases``) against the checkpoint,
    held to ``limits`` for its weights, and published.

    An artifact whose verify failed is refused (RefusedError, nothing written) unless
    ``allow_failed`` (published, and the manifest says so) or ``withhold_failed`` (the others
    are published; the release says why it was withheld, and a format that could not be
    built within its drift limit is reported instead of stopping the run)."""
    from ..quantize.validation import Goal

    Goal(max_drift, max_modality_drift)  # checks both ranges before anything is built
    output = Path(output)
    paths = [Path(sources)] if isinstance(sources, str | Path) else [Path(s) for s in sources]
    if len(paths) == 1 and paths[0].is_file():
        if verify_files:
            raise MsamError("verify files are for artifact dirs; publishing from a checkpoint runs verify itself")
        return _from_checkpoint(paths[0], output, locals())
    if formats is not None:
        raise MsamError("--formats builds from one checkpoint file; give the checkpoint, not artifact dirs")
    pairs = artifact_pairs(paths, [Path(v) for v in verify_files] if verify_files else None)
    manifest = publish_bundle(pairs, output, allow_failed, overwrite)
    return Release(output, manifest, {d.name: v for d, v in pairs})


def _from_checkpoint(checkpoint: Path, output: Path, options: dict[str, Any]) -> Release:
    from ..data import data_dirs, list_cases
    from ..runtime import open_model
    from ..verify import verify

    if options["data"] is None:
        raise MsamError("--data is required to publish from a checkpoint (the cases to verify on)")
    check_bundle_output(output, options["overwrite"])
    formats = parse_formats(options["formats"] or DEFAULT_FORMATS)
    imgs, gts_dir = data_dirs(options["data"], options["gts"])
    if gts_dir is None:
        raise MsamError(f"{options['data']}: no gts/ beside imgs/; verify needs ground truth (or pass --gts)")
    cases = list_cases(imgs)
    if options["cases"] is not None:
        cases = [p for p in cases if p.name in set(options["cases"])]
    steps = options["progress"] or Steps(quiet=True)
    ctx = BuildContext(
        checkpoint,
        options["variant"],
        options["trust_pickle"],
        Path(options["calibration"]) if options["calibration"] else None,
        options["max_drift"],
        options["max_modality_drift"],
        options["target"],
        options["threads"],
        steps,
    )
    threads, release = options["threads"], Release(None, None)
    reference = open_model(checkpoint, threads=threads, variant=ctx.variant, trust_pickle=ctx.trust_pickle)
    shared: dict = {}  # one reference run per case, shared by every format
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.work-", dir=output.resolve().parent) as tmp:
        work = Path(tmp)
        reports = Path(options["verify_dir"]) if options["verify_dir"] else work / "verify"
        pairs = []
        for name in formats:
            artifact = work / name
            try:
                BUILDERS[name](ctx, artifact)
            except ParityError as exc:
                if not options["withhold_failed"]:
                    raise
                steps.note(f"[yellow]{name} not built: {escape(str(exc))}[/]")
                release.not_built[name] = str(exc)
                continue
            ctx.built[name] = artifact
            candidate = open_model(artifact, threads=threads, need="verify")
            with steps.step("verify", f"{name} on {len(cases)} case(s)"):
                result = verify(
                    candidate,
                    imgs,
                    reference=reference,
                    output=reports / f"{name}.json",
                    gts=gts_dir,
                    limits=options["limits"].for_precision(candidate.precision),
                    repeats=options["repeats"],
                    html=options["html"],
                    on_case=options["on_case"],
                    reference_cache=shared,
                    cases=[p.name for p in cases],
                )
            release.verified[name] = result.path
            release.sizes[name] = sum(f["size_bytes"] for f in (candidate.record or {}).get("files", {}).values())
            if not result.passed:
                release.withheld[name] = "; ".join(result.report["verdict"]["failures"])
            pairs.append((artifact, result.path))
        if options["withhold_failed"]:
            pairs = [(a, v) for a, v in pairs if a.name not in release.withheld]
        if not pairs:
            raise MsamError("no artifact passed verify; nothing to publish")
        with steps.step("publish", f"{output.name}/: {', '.join(a.name for a, _ in pairs)}"):
            release.manifest = publish_bundle(pairs, output, options["allow_failed"], options["overwrite"])
        release.bundle = output
    if not options["verify_dir"]:  # the reports lived in the work directory; the bundle holds copies
        release.verified = {a.name: output / a.name / "verify.json" for a, _ in pairs}
    return release
