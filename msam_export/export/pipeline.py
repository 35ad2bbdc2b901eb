"""``msam-export onnx`` and ``msam-export openvino`` as library functions."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..checkpoints import LoadedCheckpoint, load_checkpoint
from ..errors import MsamError, ParityError
from ..files import check_output_dir, sha256_of, staged_output
from ..progress import Steps
from ..runtime import Backend, OnnxBackend, OpenVinoBackend
from . import onnx as onnx_export
from .metadata import SCHEMA, file_table, library_versions, read_metadata, write_metadata
from .parity import (
    FP16,
    FP32,
    PARITY_CASES,
    Tolerance,
    cached_exact_reference,
    compare,
    exact_reference,
    parity_inputs,
    preprocess_parity,
)

PRECISIONS = ("fp32", "fp16")


def _model_info(loaded: LoadedCheckpoint) -> dict[str, Any]:
    spec = loaded.spec
    return {"variant": spec.name, "title": spec.title, "input_size": spec.input_size, "resize": spec.resize}


def _check_parity(
    candidate: Backend,
    loaded: LoadedCheckpoint,
    tolerance: Tolerance,
    steps: Steps,
    what: str,
    cases: tuple[str, ...] = PARITY_CASES,
) -> dict[str, Any]:
    with steps.step("parity", f"{candidate.name} vs PyTorch f64"):
        reference = cached_exact_reference(loaded.model, loaded.provenance.sha256)
        inputs = parity_inputs(loaded.spec, cases)
        result = compare(reference, candidate, inputs, loaded.model.has_decoder)
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


def write_onnx(
    loaded: LoadedCheckpoint, folder: Path, opset: int, simplify: bool, steps: Steps, with_preprocess: bool = False
) -> dict[str, Any]:
    """Traces, simplifies and checks the graphs into ``folder``; returns their metadata."""
    graphs = {"encoder": onnx_export.ENCODER_FILE}
    if loaded.model.has_decoder:
        graphs["decoder"] = onnx_export.DECODER_FILE
    if with_preprocess:
        graphs["encoder_preprocess"] = onnx_export.PREPROCESS_ENCODER_FILE
    with steps.step("trace", f"opset {opset}"):
        onnx_export.trace_encoder(loaded.model, loaded.spec, folder / graphs["encoder"], opset)
        if "decoder" in graphs:
            onnx_export.trace_decoder(loaded.model, loaded.spec, folder / graphs["decoder"], opset)
        if with_preprocess:
            onnx_export.trace_preprocessing_encoder(
                loaded.model, loaded.spec, folder / graphs["encoder_preprocess"], opset
            )
    simplified = {}
    if simplify:
        with steps.step("simplify", "onnxsim"):
            simplified = {part: onnx_export.simplify(folder / f) for part, f in graphs.items()}
        for part, status in simplified.items():
            if status != "ok":
                steps.note(f"[yellow]{part}: {status}[/]")
    with steps.step("check", "onnx.checker full_check"):
        for f in graphs.values():
            onnx_export.check(folder / f)
    return {
        "graphs": {
            part: {"file": f, **onnx_export.io_spec(folder / f), "simplified": simplified.get(part, "not requested")}
            for part, f in graphs.items()
        },
        "files": list(graphs.values()),
    }


def export_onnx(
    checkpoint: Path,
    out_dir: Path,
    variant: str | None = None,
    trust_pickle: bool = False,
    opset: int = onnx_export.DEFAULT_OPSET,
    simplify: bool = True,
    force: bool = False,
    steps: Steps | None = None,
    parity_cases: tuple[str, ...] = PARITY_CASES,
    with_preprocess: bool = False,
) -> dict[str, Any]:
    """Checkpoint -> ``out_dir/{encoder,decoder}.onnx`` + ``export.json``, parity-checked
    against PyTorch in ONNX Runtime. Raises ParityError (nothing written) on drift.

    ``with_preprocess`` adds ``encoder_preprocess.onnx`` (uint8 (H,W,3) in; bilinear
    models only: OpenCV's INTER_AREA has no exact graph form here)."""
    steps = steps or Steps(quiet=True)
    check_output_dir(out_dir, force)
    with steps.step("load", checkpoint.name):
        loaded = load_checkpoint(checkpoint, variant=variant, trust_pickle=trust_pickle)
    if with_preprocess and loaded.spec.resize != "bilinear":
        raise MsamError(
            f"--with-preprocess supports MedficientSAM's bilinear resize only; {loaded.spec.title} uses OpenCV "
            "INTER_AREA, which has no exact ONNX form: preprocess with msam_export.contract instead"
        )
    if not loaded.model.has_decoder:
        steps.note("[yellow]encoder-only checkpoint: exporting the encoder alone[/]")
    with staged_output(out_dir, force) as stage:
        graphs = write_onnx(loaded, stage, opset, simplify, steps, with_preprocess)
        candidate = OnnxBackend(stage / graphs["files"][0], _decoder_path(stage, graphs))
        parity = _check_parity(candidate, loaded, FP32, steps, "ONNX Runtime", parity_cases)
        if with_preprocess:
            parity["with_preprocess"] = _check_preprocess_parity(
                stage / onnx_export.PREPROCESS_ENCODER_FILE, loaded, steps
            )
        meta = {
            "schema": SCHEMA,
            "kind": "onnx",
            "model": _model_info(loaded),
            "source": loaded.provenance.to_dict(),
            "options": {"opset": opset, "simplify": simplify, "with_preprocess": with_preprocess},
            "versions": library_versions(),
            "graphs": graphs["graphs"],
            "files": file_table(stage, graphs["files"]),
            "parity": parity,
            "timings_s": steps.timings,
        }
        write_metadata(stage, meta)
    return meta


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


def _decoder_path(folder: Path, graphs: dict[str, Any]) -> Path | None:
    decoder = graphs["graphs"].get("decoder")
    return folder / decoder["file"] if decoder else None


def _convert(onnx_file: Path, xml: Path, precision: str) -> None:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_file)), str(xml), compress_to_fp16=precision == "fp16")


def _onnx_source(src: Path, loaded: LoadedCheckpoint | None, work: Path, opts: dict, steps: Steps) -> dict[str, Any]:
    """An ONNX export to convert: the given directory, or a fresh one in ``work``."""
    if loaded is None:
        meta = read_metadata(src)
        if meta.get("kind") != "onnx":
            raise MsamError(f"{src}: a {meta.get('kind')} export; openvino needs a checkpoint or an ONNX export dir")
        graphs = {part: g for part, g in meta["graphs"].items() if part in ("encoder", "decoder")}
        return {"dir": src, "graphs": graphs, "meta": meta}
    graphs = write_onnx(loaded, work, opts["opset"], opts["simplify"], steps)
    return {"dir": work, "graphs": graphs["graphs"], "meta": None}


def _load_reference(src: Path, variant: str | None, trust_pickle: bool, steps: Steps) -> LoadedCheckpoint:
    """The PyTorch model behind SRC: the checkpoint itself, or the one an ONNX export names."""
    if src.is_dir():
        meta = read_metadata(src)
        source = meta["source"]
        ckpt = Path(source["path"])
        if not ckpt.is_file() or sha256_of(ckpt) != source["sha256"]:
            raise MsamError(f"{src}: its source checkpoint {ckpt} is gone or changed; parity needs it")
        variant = variant or source["variant"]
        src = ckpt
    with steps.step("load", src.name):
        return load_checkpoint(src, variant=variant, trust_pickle=trust_pickle)


def export_openvino(
    src: Path,
    out_dir: Path,
    precision: str = "fp32",
    variant: str | None = None,
    trust_pickle: bool = False,
    opset: int = onnx_export.DEFAULT_OPSET,
    simplify: bool = True,
    force: bool = False,
    steps: Steps | None = None,
    parity_cases: tuple[str, ...] = PARITY_CASES,
) -> dict[str, Any]:
    """Checkpoint or ONNX export dir -> ``out_dir/{encoder,decoder}.{xml,bin}`` + ``export.json``,
    parity-checked in OpenVINO at f32 inference precision."""
    if precision not in PRECISIONS:
        raise MsamError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    steps = steps or Steps(quiet=True)
    if not src.exists():
        raise MsamError(f"{src}: no such file or directory")
    check_output_dir(out_dir, force)
    loaded = _load_reference(src, variant, trust_pickle, steps)
    with staged_output(out_dir, force) as stage, tempfile.TemporaryDirectory(dir=stage.parent) as work:
        source = _onnx_source(
            src, None if src.is_dir() else loaded, Path(work), {"opset": opset, "simplify": simplify}, steps
        )
        files = []
        with steps.step("convert", f"OpenVINO IR {precision}"):
            for part, graph in source["graphs"].items():
                _convert(source["dir"] / graph["file"], stage / f"{part}.xml", precision)
                files += [f"{part}.xml", f"{part}.bin"]
        decoder = stage / "decoder.xml" if "decoder" in source["graphs"] else None
        candidate = OpenVinoBackend(stage / "encoder.xml", decoder, precision="f32")
        tolerance = FP32 if precision == "fp32" else FP16
        parity = _check_parity(candidate, loaded, tolerance, steps, f"OpenVINO {precision}", parity_cases)
        onnx_meta = source["meta"]
        meta = {
            "schema": SCHEMA,
            "kind": "openvino",
            "model": _model_info(loaded),
            "source": loaded.provenance.to_dict(),
            "onnx_source": {"dir": str(src), "files": onnx_meta["files"]} if onnx_meta else "exported in this run",
            "options": {
                "precision": precision,
                **(onnx_meta["options"] if onnx_meta else {"opset": opset, "simplify": simplify}),
                "parity_inference_precision": "f32",
            },
            "versions": library_versions(),
            "graphs": {part: {**g, "file": f"{part}.xml"} for part, g in source["graphs"].items()},
            "files": file_table(stage, files),
            "parity": parity,
            "timings_s": steps.timings,
        }
        write_metadata(stage, meta)
    return meta
