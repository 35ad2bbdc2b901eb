"""``msam-export openvino --int8``: NNCF post-training INT8 with budgeted accuracy control.

Recipe (why each choice: ``benchmarks/results/``):
- NNCF ``quantize`` with the TRANSFORMER model type and PERFORMANCE preset
  (symmetric activations), then the quantizers of GELU outputs start at GELU's minimum
  (``graph.start_gelu_ranges_at_minimum``: half the step where the INT8 error was largest);
- for a target CPU without VNNI (AVX2, AVX-512 without VNNI) the overflow fix (7-bit
  weights), as those CPUs saturate u8 x s8 products otherwise; full 8-bit weights on VNNI/AMX;
- then GPTQ rounding of the INT8 weights (``rounding.py``): NNCF's scales kept, the int8 codes
  chosen to minimize each layer's output error on the calibration slices rather than the
  weight error (layer output error about 0.2x of nearest rounding; graph and speed unchanged);
- SmoothQuant and bias correction off: neither helped agreement here, and without
  them keeping an operation in float restores it exactly (``graph.keep_in_float``);
- the spec's float modules (architecture-aware ignored scope) never quantized;
- then accuracy control (``restore.py``) against mean mask agreement with FP32 on
  the calibration file's validation split;
- the decoder's weights compressed to INT8 (weight-only) when that keeps the drift
  within the limit, else the decoder stays FP32.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..artifact import Artifact, files_of, graph_file, new_record, open_artifact, write_record
from ..calibrate import CalibrationSet, load_calibration
from ..errors import MsamError, ParityError
from ..export import export_openvino
from ..files import PathLike, check_output_dir, staged_output
from ..limits import DEFAULT_MAX_DRIFT
from ..progress import Steps
from ..runtime import OpenVinoBackend
from ..system import TARGETS, cpu_info, needs_vnni, runs_natively, target_of
from ..zoo import ModelSpec, get_spec
from .graph import QUANTIZABLE, module_path, start_gelu_ranges_at_minimum, store_constants_as_fp16
from .qat import QatOptions
from .restore import DEFAULT_BUDGET, Budget, Restoration, restore_accuracy
from .rounding import Rounding, gram_slices, round_weights
from .validation import DriftMeter, Goal, calibration_record


def float_scope(model: Any, spec: ModelSpec) -> dict[str, list[str]]:
    """The spec's float modules in ``model``: reason -> names of the operations kept in float."""
    out: dict[str, list[str]] = {}
    for op in model.get_ops():
        if op.get_type_name() not in QUANTIZABLE:
            continue
        reason = spec.int8_float_reason(module_path(op, depth=10))
        if reason is not None:
            out.setdefault(reason, []).append(op.get_friendly_name())
    return out


def compiler(
    threads: int | None, emulate_int8: bool = False, as_saved: bool = False
) -> Callable[[Any, Any], OpenVinoBackend]:
    """``compile(encoder, decoder=None)`` -> an f32 OpenVINO backend of in-memory models; with
    ``emulate_int8`` quantized operations run in f32 (the target's arithmetic on a CPU without it);
    with ``as_saved`` in-memory models run with their float constants rounded to fp16, as
    ``quantize_openvino`` saves them, so that what is measured is what is written."""

    def saved_form(model: Any) -> Any:
        if not as_saved or model is None or isinstance(model, str | Path):
            return model
        copy = model.clone()
        store_constants_as_fp16(copy)
        return copy

    def compile_models(encoder: Any, decoder: Any = None) -> OpenVinoBackend:
        return OpenVinoBackend(
            saved_form(encoder), saved_form(decoder), threads=threads, precision="f32", emulate_int8=emulate_int8
        )

    return compile_models


def resolve_target(target: str) -> str:
    """``--target``: "auto" is this CPU's INT8 arithmetic (``system.target_of``)."""
    if target == "auto":
        return target_of(cpu_info()["isa"])
    if target not in TARGETS:
        raise MsamError(f"unknown target {target!r}; choose auto or one of {', '.join(TARGETS)}")
    return target


def needs_overflow_fix(target: str) -> bool:
    """CPUs without VNNI (AVX2, AVX-512 without VNNI) add u8 x s8 products in 16 bits, which
    saturate with full 8-bit weights; NNCF's overflow fix then stores 7-bit weights."""
    return not needs_vnni(target)


def quantize_encoder(
    model: Any, calib: CalibrationSet, ignored: list[str], target: str, **changes: Any
) -> tuple[Any, Rounding]:
    """INT8 encoder from the calibration file's training slices, for ``target``: one NNCF call,
    GELU ranges from GELU's minimum, then GPTQ weight rounding. ``model`` is left as it is.

    ``changes``: a ``preset``, ``weight_rounding="nearest"`` (NNCF's own), or
    ``nncf.AdvancedQuantizationParameters`` fields that replace the recipe's (for experiments
    such as ``benchmarks/int8_sensitivity.py``)."""
    import nncf

    nncf.set_log_level(logging.WARNING)  # its INFO lines list every ignored node

    images = calib.train_images
    dataset = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
    preset = changes.pop("preset", nncf.QuantizationPreset.PERFORMANCE)
    rounding = changes.pop("weight_rounding", "gptq")
    advanced = {
        "overflow_fix": nncf.OverflowFix.ENABLE if needs_overflow_fix(target) else nncf.OverflowFix.DISABLE,
        "disable_bias_correction": True,
        "smooth_quant_alphas": nncf.AdvancedSmoothQuantParameters(convolution=-1, matmul=-1),
    } | changes
    quantized = nncf.quantize(
        model,
        dataset,
        model_type=nncf.ModelType.TRANSFORMER,
        preset=preset,
        subset_size=len(images),
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
        advanced_parameters=nncf.AdvancedQuantizationParameters(**advanced),
    )
    start_gelu_ranges_at_minimum(quantized)
    if rounding == "nearest":
        return quantized, Rounding(method="nearest")
    return quantized, round_weights(quantized, model, images[gram_slices(len(images))])


def compress_decoder(model: Any) -> Any:
    """Weight-only INT8 of the decoder (activations stay float)."""
    import nncf

    nncf.set_log_level(logging.WARNING)

    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)


def _fp32_source(
    source: Path, work: Path, variant: str | None, trust_pickle: bool, steps: Steps, prompts: str | None = None
) -> Artifact:
    """An FP32 OpenVINO artifact to quantize: SOURCE itself, or one made from SOURCE in ``work``
    (with the ``prompts`` decoder interface)."""
    if source.is_dir():
        artifact = open_artifact(source)
        if artifact.kind == "openvino":
            if artifact.precision != "fp32":
                raise MsamError(f"{source}: a {artifact.precision} artifact; --int8 starts from fp32")
            if prompts is not None and prompts != artifact.prompts:
                raise MsamError(f"{source}: its decoder has the {artifact.prompts!r} prompt interface, not {prompts!r}")
            return artifact
    return export_openvino(
        source, work / "fp32", prompts=prompts, variant=variant, trust_pickle=trust_pickle, progress=steps
    )


def _source_checkpoint(fp32: Artifact) -> Path:
    """The checkpoint the artifact was exported from (QAT trains the PyTorch model)."""
    from ..files import sha256_of

    source = fp32.record["source"]
    path = Path(source["path"])
    if not path.is_file() or sha256_of(path) != source["sha256"]:
        raise MsamError(f"{fp32.path}: its source checkpoint {path} is gone or changed; --qat needs it")
    return path


def quantize_openvino(
    source: PathLike,
    output: PathLike,
    *,
    calibration: PathLike,
    max_drift: float = DEFAULT_MAX_DRIFT,
    max_modality_drift: float | None = None,
    target: str = "auto",
    budget: Budget = DEFAULT_BUDGET,
    threads: int | None = None,
    compress_decoder_weights: bool = True,
    qat: QatOptions | None = None,
    prompts: str | None = None,
    variant: str | None = None,
    trust_pickle: bool = False,
    overwrite: bool = False,
    progress: Steps | None = None,
) -> Artifact:
    """Checkpoint, ONNX artifact or FP32 OpenVINO artifact -> INT8 OpenVINO artifact for the
    ``target`` CPU's arithmetic. ``prompts`` picks the decoder interface when the FP32 graphs are
    made here (default "box"); the decoder's interface is kept as it is. ``max_drift`` limits the
    drop of the mean agreement with FP32 on the calibration file's validation cases;
    ``max_modality_drift``, when given, that of each modality's mean as well.

    Raises ParityError (nothing written) when the drift limit is not met within the budget.
    """
    import openvino as ov

    steps = progress or Steps(quiet=True)
    source, output, calib_path = Path(source), Path(output), Path(calibration)
    if not source.exists():
        raise MsamError(f"{source}: no such file or directory")
    goal = Goal(max_drift, max_modality_drift)  # checks both ranges
    target = resolve_target(target)
    check_output_dir(output, overwrite)
    with tempfile.TemporaryDirectory(prefix="msam-int8-") as tmp:
        fp32 = _fp32_source(source, Path(tmp), variant, trust_pickle, steps, prompts)
        spec = get_spec(fp32.variant)
        calib = load_calibration(calib_path, spec)
        if calib.model != spec.name:
            raise MsamError(f"{calib_path} was made for {calib.model}, not {spec.name}; rerun msam-export calibrate")
        if fp32.graph("decoder") is None:
            raise MsamError(f"{source}: encoder-only; the drift metric needs the mask decoder")
        compile_models = compiler(threads, emulate_int8=not runs_natively(target), as_saved=True)
        if not runs_natively(target):
            steps.note(f"this CPU lacks {target}'s INT8 arithmetic: measuring its exact emulation in f32 (slower)")
        core = ov.Core()
        original = core.read_model(str(fp32.graph("encoder")))
        fp32_decoder = core.read_model(str(fp32.graph("decoder")))
        with steps.step("reference", f"FP32 masks of {len(set(calib.cases[calib.validation]))} validation cases"):
            reference = compiler(threads, emulate_int8=not runs_natively(target))
            meter = DriftMeter(calib, reference(None, fp32_decoder), spec)
        scope = float_scope(original, spec)
        ignored = [name for names in scope.values() for name in names]
        with steps.step(
            "quantize", f"NNCF INT8 encoder for {target}, {len(calib.train_images)} calibration slices, GPTQ rounding"
        ):
            quantized, rounding = quantize_encoder(original, calib, ignored, target)
        steps.note(
            f"GPTQ weight rounding: {len(rounding.output_error)} layers, output error "
            f"{rounding.mean_output_error():.2f}x nearest rounding ({rounding.seconds:.0f} s)"
        )
        with steps.step("validate", "mask agreement vs FP32"):
            first = meter.measure(compile_models(quantized))
        steps.note(f"INT8 {goal.describe(first)}")
        restoration = Restoration(stopped_by="target met")
        final = first
        if not goal.met(first):
            limits = f"up to {budget.max_float_modules} modules, {budget.max_seconds:.0f} s"
            with steps.step("accuracy control", limits):
                quantized, final, restoration = restore_accuracy(
                    quantized, original, meter, compile_models, goal, first, budget, steps.note
                )
        if not goal.met(final):
            raise ParityError(
                f"INT8 {goal.describe(final)} after accuracy control ({restoration.stopped_by}); nothing written. "
                "Try --max-float-modules, --qat, a calibration with more cases of the weakest modality, or a larger "
                + ("--max-drift / --max-modality-drift" if max_modality_drift is not None else "--max-drift")
            )
        if qat is not None:
            from .qat import distill

            with steps.step("qat", f"quantization-aware distillation, {qat.steps} steps"):
                trained, after, qat_record = distill(
                    _source_checkpoint(fp32),
                    calib,
                    spec,
                    qat,
                    target=target,
                    kept_float=[k["module"] for k in restoration.kept_float],
                    measure=lambda model: meter.measure(compile_models(model)),
                    rank=goal.rank,
                    note=steps.note,
                )
            # the distilled encoder replaces the post-training one only when it is nearer the goal
            kept = goal.rank(after) > goal.rank(final)
            qat_record |= {
                "agreement_before": round(final.agreement, 6),
                "agreement_after": round(after.agreement, 6),
                "kept": "qat" if kept else "post-training",
            }
            verdict = "kept" if kept else "not better: the post-training encoder is kept"
            steps.note(f"after QAT: {goal.describe(after)}, before: {goal.describe(final)} ({verdict})")
            if kept:
                quantized, final = trained, after
        decoder, decoder_mode = fp32_decoder, "fp32"
        if compress_decoder_weights:
            with steps.step("decoder", "INT8 weight compression"):
                compressed = compress_decoder(core.read_model(str(fp32.graph("decoder"))))
                trial = meter.measure(compile_models(quantized), compile_models(None, compressed))
            if goal.met(trial):
                decoder, decoder_mode = compressed, "int8-weights"
            else:
                steps.note(f"decoder kept FP32: weight compression gave {goal.describe(trial)}")
        with staged_output(output, overwrite) as stage:
            # Constants left in float (ignored-scope weights, attention biases, the decoder's
            # positional encoding) are stored as fp16 and computed in f32; the drift that
            # counts is measured on the saved files.
            for part, model in (("encoder", quantized), ("decoder", decoder)):
                store_constants_as_fp16(model)
                ov.save_model(model, str(stage / graph_file("openvino", part)), compress_to_fp16=False)
            with steps.step("check", "drift of the saved artifact"):
                saved = meter.measure(
                    compile_models(stage / graph_file("openvino", "encoder"), stage / graph_file("openvino", "decoder"))
                )
            if not goal.met(saved):
                raise ParityError(f"saved INT8 artifact: {goal.describe(saved)}; nothing written")
            quantization = {
                "engine": "nncf",
                "target": target,
                "recipe": "TRANSFORMER model type, PERFORMANCE preset, GELU outputs from GELU's minimum, "
                + ("overflow fix (7-bit weights), " if needs_overflow_fix(target) else "8-bit weights, ")
                + "GPTQ weight rounding, no SmoothQuant, no bias correction; float constants stored as fp16",
                "weight_rounding": rounding.to_dict(),
                "calibration": calibration_record(calib_path, calib),
                **goal.to_dict(),
                "metric": "mean mask agreement DSC vs FP32 over the validation cases (3D: propagated)"
                + (", and over each modality's cases" if max_modality_drift is not None else ""),
                "budget": budget.__dict__,
                "float_scope": {reason: len(names) for reason, names in scope.items()},
                "float_scope_operations": scope,
                "drift_before_control": first.to_dict(),
                "accuracy_control": restoration.to_dict(),
                "decoder": decoder_mode,
                "drift": saved.to_dict(),
                "measured_with": "native" if runs_natively(target) else "f32 emulation",
                "size_vs_fp32": _size_ratio(stage, fp32.path),
            }
            if qat is not None:
                quantization["qat"] = qat_record
            record = new_record(
                "openvino",
                model=fp32.record["model"],
                source=fp32.record["source"],
                options=fp32.record["options"] | {"precision": "int8", "target": target},
                graphs=fp32.record["graphs"],
                folder=stage,
                parity={
                    "passed": True,
                    "precision": "int8",
                    "note": "INT8 is checked by its drift (quantization.drift), not by the FP32 1e-4 tolerance",
                },
                timings=steps.timings,
                fp32_source={"dir": str(fp32.path), "files": fp32.record["files"]},
                quantization=quantization,
            )
            write_record(stage, record)
    return Artifact(output, record)


def _size_ratio(stage: Path, fp32_dir: Path) -> float:
    bins = files_of("openvino", ["encoder", "decoder"])[1::2]
    return round(sum((stage / b).stat().st_size for b in bins) / sum((fp32_dir / b).stat().st_size for b in bins), 4)
