"""``export_onnx`` and ``export_openvino``: a checkpoint to parity-checked graphs.

Both write into a staging directory and rename it at the end, so an artifact appears
complete (graphs + export.json) or not at all; a parity failure writes nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..artifact import PROMPT_INTERFACES, Artifact, graph_file, model_info, new_record, open_artifact, write_record
from ..checkpoints import LoadedCheckpoint, load_checkpoint
from ..errors import MsamError, ParityError
from ..files import PathLike, check_output_dir, sha256_of, staged_output
from ..progress import Steps
from ..runtime import Backend, OnnxBackend, OpenVinoBackend
from . import onnx as onnx_export
from .parity import (
    FP16,
    FP32,
    PARITY_CASES,
    Tolerance,
    cached_exact_reference,
    compare,
    compare_prompts,
    exact_reference,
    merge_worst,
    parity_inputs,
    preprocess_parity,
    prompt_parity_inputs,
)

WEIGHT_FORMATS = ("fp32", "fp16")


def check_parity(
    candidate: Backend,
    loaded: LoadedCheckpoint,
    tolerance: Tolerance,
    steps: Steps,
    what: str,
    cases: tuple[str, ...] = PARITY_CASES,
) -> dict[str, Any]:
    """The candidate against the PyTorch model in float64 on the parity inputs; ParityError
    (nothing written) beyond ``tolerance``."""
    with steps.step("parity", f"{candidate.name} vs PyTorch f64"):
        reference = cached_exact_reference(loaded.model, loaded.provenance.sha256)
        inputs = parity_inputs(loaded.spec, cases)
        result = compare(reference, candidate, inputs, loaded.model.has_decoder)
        if getattr(candidate, "interface", "box") == "full":
            prompts = compare_prompts(reference, candidate, prompt_parity_inputs(loaded.spec, cases))
            result |= {"prompt_inputs": prompts["inputs"], "worst": merge_worst(result["worst"], prompts["worst"])}
    result |= {
        "reference": f"{reference.name} {reference.precision}",
        "candidate": candidate.name,
        "precision": candidate.precision,
        "tolerance": tolerance.to_dict(),
    }
    failures = tolerance.failures(result["worst"])
    result["passed"] = not failures
    worst = ", ".join(f"{k} {v:.3g}" for k, v in result["worst"].items())
    steps.note(f"parity {what}: {worst}")
    if failures:
        raise ParityError(f"{what} parity failed: {'; '.join(failures)}; nothing written")
    return result


def check_prompts(prompts: str) -> str:
    if prompts not in PROMPT_INTERFACES:
        raise MsamError(f"unknown prompt interface {prompts!r}; choose one of {', '.join(PROMPT_INTERFACES)}")
    return prompts


def write_onnx(
    loaded: LoadedCheckpoint,
    folder: Path,
    opset: int,
    simplify: bool,
    steps: Steps,
    with_preprocess: bool = False,
    prompts: str = "box",
) -> dict[str, Any]:
    """Traces, simplifies and checks the graphs into ``folder``; returns the record's ``graphs``.
    ``prompts`` is the decoder's interface: "box", or "full" (SAM's ONNX interface)."""
    parts = ["encoder"] + (["decoder"] if loaded.model.has_decoder else [])
    parts += ["encoder_preprocess"] if with_preprocess else []
    files = {part: graph_file("onnx", part) for part in parts}
    tracers = {
        "encoder": onnx_export.trace_encoder,
        "decoder": onnx_export.TRACERS[prompts],
        "encoder_preprocess": onnx_export.trace_preprocessing_encoder,
    }
    with steps.step("trace", f"opset {opset}"):
        for part, name in files.items():
            tracers[part](loaded.model, loaded.spec, folder / name, opset)
    simplified = {}
    if simplify:
        with steps.step("simplify", "onnxsim"):
            simplified = {part: onnx_export.simplify(folder / name) for part, name in files.items()}
        for part, status in simplified.items():
            if status != "ok":
                steps.note(f"[yellow]{part}: {status}[/]")
    with steps.step("check", "onnx.checker full_check"):
        for name in files.values():
            onnx_export.check(folder / name)
    return {
        part: {"file": name, **onnx_export.io_spec(folder / name), "simplified": simplified.get(part, "not requested")}
        for part, name in files.items()
    }


def _load(checkpoint: Path, variant: str | None, trust_pickle: bool, steps: Steps) -> LoadedCheckpoint:
    if not checkpoint.exists():
        raise MsamError(f"{checkpoint}: no such file or directory")
    with steps.step("load", checkpoint.name):
        return load_checkpoint(checkpoint, variant=variant, trust_pickle=trust_pickle)


def export_onnx(
    checkpoint: PathLike,
    output: PathLike,
    *,
    variant: str | None = None,
    trust_pickle: bool = False,
    opset: int = onnx_export.DEFAULT_OPSET,
    simplify: bool = True,
    with_preprocess: bool = False,
    prompts: str = "box",
    overwrite: bool = False,
    progress: Steps | None = None,
    parity_cases: tuple[str, ...] = PARITY_CASES,
) -> Artifact:
    """Checkpoint -> ``output/{encoder,decoder}.onnx`` + ``export.json``, parity-checked against
    PyTorch in ONNX Runtime. Raises ParityError (nothing written) on drift.

    ``with_preprocess`` adds ``encoder_preprocess.onnx`` (uint8 (H,W,3) in; bilinear models only:
    OpenCV's INTER_AREA has no exact graph form). ``prompts`` "full" writes the decoder with SAM's
    ONNX interface (points, labels, a previous mask) instead of boxes only."""
    steps = progress or Steps(quiet=True)
    check_prompts(prompts)
    checkpoint, output = Path(checkpoint), Path(output)
    check_output_dir(output, overwrite)
    loaded = _load(checkpoint, variant, trust_pickle, steps)
    if with_preprocess and loaded.spec.resize != "bilinear":
        raise MsamError(
            f"--with-preprocess supports MedficientSAM's bilinear resize only; {loaded.spec.title} uses OpenCV "
            "INTER_AREA, which has no exact ONNX form: preprocess with msam_export.contract instead"
        )
    if not loaded.model.has_decoder:
        steps.note("[yellow]encoder-only checkpoint: exporting the encoder alone[/]")
    with staged_output(output, overwrite) as stage:
        graphs = write_onnx(loaded, stage, opset, simplify, steps, with_preprocess, prompts)
        decoder = stage / graphs["decoder"]["file"] if "decoder" in graphs else None
        candidate = OnnxBackend(stage / graphs["encoder"]["file"], decoder)
        parity = check_parity(candidate, loaded, FP32, steps, "ONNX Runtime", parity_cases)
        if with_preprocess:
            parity["with_preprocess"] = _check_preprocess_parity(
                stage / graphs["encoder_preprocess"]["file"], loaded, steps
            )
        record = new_record(
            "onnx",
            model=model_info(loaded.spec),
            source=loaded.provenance.to_dict(),
            options={"precision": "fp32", "opset": opset, "simplify": simplify, "with_preprocess": with_preprocess}
            | _prompts_option(prompts),
            graphs=graphs,
            folder=stage,
            parity=parity,
            timings=steps.timings,
        )
        write_record(stage, record)
    return Artifact(output, record)


def _prompts_option(prompts: str) -> dict[str, str]:
    """The record's ``options.prompts``: written for a full-interface decoder only, so that a box
    export's export.json keeps the keys it always had (absent means "box")."""
    return {} if prompts == "box" else {"prompts": prompts}


def _check_preprocess_parity(graph: Path, loaded: LoadedCheckpoint, steps: Steps) -> dict[str, Any]:
    """The uint8-input encoder against Python preprocessing + PyTorch f64, on the real bundled cases."""
    with steps.step("parity", "uint8-input encoder vs Python preprocessing"):
        result = preprocess_parity(graph, exact_reference(loaded.model), loaded.spec, PARITY_CASES)
    failures = FP32.failures(result["worst"])
    if not result["sizes_equal"]:
        failures.append("resized/original size differs from Python preprocessing")
    result["passed"] = not failures
    steps.note(f"parity uint8-input encoder: embeddings_max_abs {result['worst']['embeddings_max_abs']:.3g}")
    if failures:
        raise ParityError(f"uint8-input encoder parity failed: {'; '.join(failures)}; nothing written")
    return result


def _convert(onnx_file: Path, xml: Path, weight_format: str) -> None:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_file)), str(xml), compress_to_fp16=weight_format == "fp16")


def _source_checkpoint(source: Path, variant: str | None, trust_pickle: bool, steps: Steps) -> LoadedCheckpoint:
    """The PyTorch model behind SOURCE: the checkpoint itself, or the one an ONNX export names."""
    if source.is_dir():
        record = open_artifact(source).record
        recorded = record["source"]
        checkpoint = Path(recorded["path"])
        if not checkpoint.is_file() or sha256_of(checkpoint) != recorded["sha256"]:
            raise MsamError(f"{source}: its source checkpoint {checkpoint} is gone or changed; parity needs it")
        return _load(checkpoint, variant or recorded["variant"], trust_pickle, steps)
    return _load(source, variant, trust_pickle, steps)


def export_openvino(
    source: PathLike,
    output: PathLike,
    *,
    weight_format: str = "fp32",
    prompts: str | None = None,
    variant: str | None = None,
    trust_pickle: bool = False,
    opset: int = onnx_export.DEFAULT_OPSET,
    simplify: bool = True,
    overwrite: bool = False,
    progress: Steps | None = None,
    parity_cases: tuple[str, ...] = PARITY_CASES,
) -> Artifact:
    """Checkpoint or FP32 ONNX artifact -> ``output/{encoder,decoder}.{xml,bin}`` + ``export.json``,
    parity-checked in OpenVINO at f32 inference precision. ``weight_format`` "fp16" stores the
    weights in fp16 (held to a mask-agreement tolerance instead of 1e-4). ``prompts`` is the
    decoder's interface ("box" or "full"; default: "box", or the ONNX artifact's own)."""
    if weight_format not in WEIGHT_FORMATS:
        raise MsamError(f"unknown weight format {weight_format!r}; choose one of {', '.join(WEIGHT_FORMATS)}")
    steps = progress or Steps(quiet=True)
    source, output = Path(source), Path(output)
    if not source.exists():
        raise MsamError(f"{source}: no such file or directory")
    onnx_source = open_artifact(source) if source.is_dir() else None
    if onnx_source is not None and (onnx_source.kind != "onnx" or onnx_source.precision != "fp32"):
        raise MsamError(
            f"{source}: a {onnx_source.kind} {onnx_source.precision} artifact; openvino converts a "
            "checkpoint or an FP32 ONNX artifact"
        )
    if onnx_source is not None and prompts is not None and prompts != onnx_source.prompts:
        raise MsamError(
            f"{source}: its decoder has the {onnx_source.prompts!r} prompt interface, not {prompts!r}; "
            "convert the checkpoint instead"
        )
    prompts = check_prompts(prompts or (onnx_source.prompts if onnx_source else "box"))
    check_output_dir(output, overwrite)
    loaded = _source_checkpoint(source, variant, trust_pickle, steps)
    with staged_output(output, overwrite) as stage, tempfile.TemporaryDirectory(dir=stage.parent) as work:
        if onnx_source is None:
            onnx_dir, graphs = Path(work), write_onnx(loaded, Path(work), opset, simplify, steps, prompts=prompts)
            options = {"opset": opset, "simplify": simplify}
        else:
            onnx_dir = source
            graphs = {part: g for part, g in onnx_source.record["graphs"].items() if part in ("encoder", "decoder")}
            options = {k: onnx_source.record["options"].get(k) for k in ("opset", "simplify")}
        options |= _prompts_option(prompts)
        with steps.step("convert", f"OpenVINO IR {weight_format}"):
            for part, graph in graphs.items():
                _convert(onnx_dir / graph["file"], stage / graph_file("openvino", part), weight_format)
        candidate = OpenVinoBackend(
            stage / graph_file("openvino", "encoder"),
            stage / graph_file("openvino", "decoder") if "decoder" in graphs else None,
        )
        tolerance = FP32 if weight_format == "fp32" else FP16
        parity = check_parity(candidate, loaded, tolerance, steps, f"OpenVINO {weight_format}", parity_cases)
        record = new_record(
            "openvino",
            model=model_info(loaded.spec),
            source=loaded.provenance.to_dict(),
            options={"precision": weight_format, **options, "parity_inference_precision": "f32"},
            graphs={part: {**g, "file": graph_file("openvino", part)} for part, g in graphs.items()},
            folder=stage,
            parity=parity,
            timings=steps.timings,
            onnx_source={"dir": str(source), "files": onnx_source.record["files"]} if onnx_source else None,
        )
        write_record(stage, record)
    return Artifact(output, record)
