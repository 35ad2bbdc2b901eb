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
from typing import Any

import numpy as np

from ..calibrate import CalibrationSet, load_calibration
from ..errors import MsamError, ParityError
from ..export.metadata import SCHEMA, file_table, library_versions, read_metadata, write_metadata
from ..export.pipeline import export_onnx
from ..files import check_output_dir, staged_output
from ..progress import Steps
from ..runtime.backends import DECODER_INPUTS, ENCODER_INPUT, default_threads
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


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _encoder_fn(path: Path, threads: int | None):
    session = _session(path, threads)
    return lambda image: session.run(None, {ENCODER_INPUT: image})[0]


def _decoder_fn(path: Path, threads: int | None):
    session = _session(path, threads)
    return lambda emb, boxes: session.run(None, {DECODER_INPUTS[0]: emb, DECODER_INPUTS[1]: boxes})[0]


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


def _fp32_onnx(src: Path, work: Path, variant: str | None, trust_pickle: bool, steps: Steps) -> tuple[Path, dict]:
    if src.is_dir():
        meta = read_metadata(src)
        if meta["kind"] != "onnx" or meta["options"].get("precision", "fp32") != "fp32":
            raise MsamError(f"{src}: onnx --int8 needs a checkpoint or an FP32 ONNX export dir")
        return src, meta
    return work / "fp32", export_onnx(src, work / "fp32", variant, trust_pickle, steps=steps)


def quantize_onnx(
    src: Path,
    out_dir: Path,
    calib_path: Path,
    max_drift: float = 0.01,
    method: str = "minmax",
    variant: str | None = None,
    trust_pickle: bool = False,
    force: bool = False,
    steps: Steps | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Checkpoint or FP32 ONNX export -> ``out_dir`` with an INT8 (QDQ) encoder.onnx and the FP32
    decoder.onnx. Raises ParityError (nothing written) when the drift exceeds ``max_drift``."""
    steps = steps or Steps(quiet=True)
    if method not in CALIBRATION_METHODS:
        raise MsamError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    if not src.exists():
        raise MsamError(f"{src}: no such file or directory")
    check_output_dir(out_dir, force)
    with tempfile.TemporaryDirectory(prefix="msam-ort-int8-") as tmp:
        work = Path(tmp)
        fp32_dir, fp32_meta = _fp32_onnx(src, work, variant, trust_pickle, steps)
        spec = get_spec(fp32_meta["model"]["variant"])
        calib = load_calibration(calib_path, spec)
        if not (fp32_dir / "decoder.onnx").is_file():
            raise MsamError(f"{src}: encoder-only; the drift metric needs the mask decoder")
        decoder = _decoder_fn(fp32_dir / "decoder.onnx", threads)
        with steps.step("reference", f"FP32 masks of {int(calib.validation.sum())} validation slices"):
            meter = DriftMeter(calib, decoder)
        scope = excluded_nodes(fp32_dir / "encoder.onnx", spec)
        exclude = [name for names in scope.values() for name in names]
        with steps.step("quantize", f"ORT static QDQ, {method}, {len(calib.train_images)} slices"):
            quantize_encoder_static(fp32_dir / "encoder.onnx", work / "encoder.onnx", calib, exclude, method, work)
        with steps.step("validate", "mask agreement vs FP32"):
            drift = meter.measure(_encoder_fn(work / "encoder.onnx", threads))
        target = 1.0 - max_drift
        steps.note(f"INT8 agreement {drift.agreement:.4f} (target {target:.4f})")
        if drift.agreement < target:
            raise ParityError(
                f"ORT INT8 agreement {drift.agreement:.4f} < {target:.4f} (max drift {max_drift}); nothing "
                "written. Try --calibration-method, more calibration slices, or the OpenVINO path"
            )
        with staged_output(out_dir, force) as stage:
            shutil.copyfile(work / "encoder.onnx", stage / "encoder.onnx")
            shutil.copyfile(fp32_dir / "decoder.onnx", stage / "decoder.onnx")
            files = ["encoder.onnx", "decoder.onnx"]
            meta = {
                "schema": SCHEMA,
                "kind": "onnx",
                "model": fp32_meta["model"],
                "source": fp32_meta["source"],
                "options": fp32_meta["options"] | {"precision": "int8"},
                "quantization": {
                    "engine": "onnxruntime",
                    "recipe": "quant_pre_process + quantize_static: QDQ, per-channel S8 weights, U8 activations",
                    "calibration_method": method,
                    "calibration": calibration_record(calib_path, calib),
                    "float_scope": {reason: len(names) for reason, names in scope.items()},
                    "float_scope_operations": scope,
                    "decoder": "fp32",
                    "max_drift": max_drift,
                    "drift": drift.to_dict(),
                    "size_vs_fp32": round(
                        (stage / "encoder.onnx").stat().st_size / (fp32_dir / "encoder.onnx").stat().st_size, 4
                    ),
                },
                "versions": library_versions(),
                "graphs": fp32_meta["graphs"],
                "files": file_table(stage, files),
                "parity": {"passed": True, "precision": "int8", "note": "INT8 is checked by quantization.drift"},
                "timings_s": steps.timings,
            }
            write_metadata(stage, meta)
    return meta
