"""``msam-export onnx --int8``: ONNX Runtime static INT8 (QDQ) of the encoder.

``quant_pre_process`` (shape inference, ORT graph optimisation), then ``quantize_static``
with per-channel int8 weights, uint8 activations (ORT's x86 default, U8S8), the
calibration file's training slices and a selectable range method. The model spec's
float modules stay float (``nodes_to_exclude``), as in the OpenVINO path. The decoder
stays FP32. The artifact is written only if its mask agreement with FP32 on the
validation slices is within ``max_drift``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..artifact import ENCODER_INPUT, Artifact, graph_file, new_record, open_artifact, write_record
from ..calibrate import CalibrationSet, load_calibration
from ..errors import MsamError, ParityError
from ..export import export_onnx
from ..files import PathLike, check_output_dir, staged_output
from ..limits import DEFAULT_MAX_DRIFT
from ..progress import Steps
from ..runtime import OnnxBackend
from ..zoo import ModelSpec, get_spec
from .validation import DriftMeter, calibration_record

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def excluded_nodes(model_path: Path, spec: ModelSpec) -> dict[str, list[str]]:
    """The spec's float modules in an ONNX graph: reason -> node names (by their "/a/b/Op" names)."""
    import onnx

    out: dict[str, list[str]] = {}
    for node in onnx.load(str(model_path), load_external_data=False).graph.node:
        if not node.name.startswith("/"):
            continue
        reason = spec.int8_float_reason("/".join(node.name.strip("/").split("/")[:-1]))
        if reason is not None:
            out.setdefault(reason, []).append(node.name)
    return out


class _Reader:
    """ORT's CalibrationDataReader protocol over the calibration file's training slices."""

    def __init__(self, images: np.ndarray) -> None:
        self._items = iter([{ENCODER_INPUT: images[i : i + 1]} for i in range(len(images))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_encoder_static(
    fp32: Path, out: Path, calib: CalibrationSet, exclude: list[str], method: str, work: Path
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / "encoder.pre.onnx"
    quant_pre_process(str(fp32), str(prepared))
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    quantize_static(
        str(prepared),
        str(out),
        _Reader(calib.train_images),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=methods[method],
        nodes_to_exclude=exclude,
        extra_options={"CalibTensorRangeSymmetric": False},
    )


def _fp32_onnx(source: Path, work: Path, variant: str | None, trust_pickle: bool, steps: Steps) -> Artifact:
    if source.is_dir():
        artifact = open_artifact(source)
        if artifact.kind != "onnx" or artifact.precision != "fp32":
            raise MsamError(f"{source}: onnx --int8 needs a checkpoint or an FP32 ONNX artifact")
        return artifact
    return export_onnx(source, work / "fp32", variant=variant, trust_pickle=trust_pickle, progress=steps)


def quantize_onnx(
    source: PathLike,
    output: PathLike,
    *,
    calibration: PathLike,
    max_drift: float = DEFAULT_MAX_DRIFT,
    method: str = "minmax",
    threads: int | None = None,
    variant: str | None = None,
    trust_pickle: bool = False,
    overwrite: bool = False,
    progress: Steps | None = None,
) -> Artifact:
    """Checkpoint or FP32 ONNX artifact -> ``output`` with an INT8 (QDQ) encoder.onnx and the FP32
    decoder.onnx. Raises ParityError (nothing written) when the drift exceeds ``max_drift``."""
    steps = progress or Steps(quiet=True)
    source, output, calib_path = Path(source), Path(output), Path(calibration)
    if method not in CALIBRATION_METHODS:
        raise MsamError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    if not source.exists():
        raise MsamError(f"{source}: no such file or directory")
    check_output_dir(output, overwrite)
    with tempfile.TemporaryDirectory(prefix="msam-ort-int8-") as tmp:
        work = Path(tmp)
        fp32 = _fp32_onnx(source, work, variant, trust_pickle, steps)
        spec = get_spec(fp32.variant)
        calib = load_calibration(calib_path, spec)
        encoder_file, decoder_file = graph_file("onnx", "encoder"), graph_file("onnx", "decoder")
        if fp32.graph("decoder") is None:
            raise MsamError(f"{source}: encoder-only; the drift metric needs the mask decoder")
        decoder = OnnxBackend(None, fp32.graph("decoder"), threads)
        with steps.step("reference", f"FP32 masks of {int(calib.validation.sum())} validation slices"):
            meter = DriftMeter(calib, decoder, spec)
        scope = excluded_nodes(fp32.graph("encoder"), spec)
        exclude = [name for names in scope.values() for name in names]
        with steps.step("quantize", f"ORT static QDQ, {method}, {len(calib.train_images)} slices"):
            quantize_encoder_static(fp32.graph("encoder"), work / encoder_file, calib, exclude, method, work)
        with steps.step("validate", "mask agreement vs FP32"):
            drift = meter.measure(OnnxBackend(work / encoder_file, None, threads))
        goal = 1.0 - max_drift
        steps.note(f"INT8 agreement {drift.agreement:.4f} (target {goal:.4f})")
        if drift.agreement < goal:
            raise ParityError(
                f"ORT INT8 agreement {drift.agreement:.4f} < {goal:.4f} (max drift {max_drift}); nothing "
                "written. Try --calibration-method, more calibration slices, or the OpenVINO path"
            )
        with staged_output(output, overwrite) as stage:
            shutil.copyfile(work / encoder_file, stage / encoder_file)
            shutil.copyfile(fp32.graph("decoder"), stage / decoder_file)
            quantization = {
                "engine": "onnxruntime",
                "recipe": "quant_pre_process + quantize_static: QDQ, per-channel S8 weights, U8 activations",
                "calibration_method": method,
                "calibration": calibration_record(calib_path, calib),
                "float_scope": {reason: len(names) for reason, names in scope.items()},
                "float_scope_operations": scope,
                "decoder": "fp32",
                "max_drift": max_drift,
                "drift": drift.to_dict(),
                "size_vs_fp32": round((stage / encoder_file).stat().st_size / fp32.graph("encoder").stat().st_size, 4),
            }
            record = new_record(
                "onnx",
                model=fp32.record["model"],
                source=fp32.record["source"],
                options=fp32.record["options"] | {"precision": "int8"},
                graphs={p: g for p, g in fp32.record["graphs"].items() if p in ("encoder", "decoder")},
                folder=stage,
                parity={"passed": True, "precision": "int8", "note": "INT8 is checked by quantization.drift"},
                timings=steps.timings,
                quantization=quantization,
            )
            write_record(stage, record)
    return Artifact(output, record)
