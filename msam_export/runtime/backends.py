"""Inference backends behind one small protocol.

A backend is two methods: ``encode`` maps a preprocessed (1,3,S,S) float32 image to a
(1,256,64,64) embedding; ``decode`` maps an embedding and (N,4) S-frame boxes to low-res
logits (N,1,256,256) and IoU predictions (N,1). Everything above (pre/post-processing,
2D/3D, timing) is shared. ONNX Runtime and OpenVINO need no torch; the PyTorch backend
lives in ``torch_backend`` and is imported only when a checkpoint is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..artifact import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT
from ..errors import require

OPENVINO_PRECISIONS = ("f32", "bf16", "f16")


class Backend(Protocol):
    name: str
    precision: str

    def encode(self, image: np.ndarray) -> np.ndarray: ...

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def default_threads() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_cache_dir() -> Path:
    """The per-user OpenVINO compiled-model cache: ``$MSAM_CACHE_DIR`` when set, else
    ``$XDG_CACHE_HOME/msam-export/openvino``."""
    if os.environ.get("MSAM_CACHE_DIR"):
        return Path(os.environ["MSAM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "msam-export" / "openvino"


class OnnxBackend:
    """ONNX Runtime on the CPU execution provider."""

    name = "onnxruntime"
    precision = "f32"

    def __init__(self, encoder: Path | None, decoder: Path | None, threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnxruntime", "running an ONNX artifact")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(encoder), options, providers=providers) if encoder else None
        self.decoder = ort.InferenceSession(str(decoder), options, providers=providers) if decoder else None

    def encode(self, image: np.ndarray) -> np.ndarray:
        return self.encoder.run([ENCODER_OUTPUT], {ENCODER_INPUT: image})[0]

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.decoder is None:
            raise RuntimeError("this export has no decoder")
        feeds = dict(zip(DECODER_INPUTS, (embeddings, np.ascontiguousarray(boxes, dtype=np.float32)), strict=True))
        logits, iou = self.decoder.run(list(DECODER_OUTPUTS), feeds)
        return logits, iou


BOX_BUCKETS = (1, 2, 4, 8, 16, 32)


def _model_arg(model: Path | Any) -> Any:
    """What ``Core.compile_model`` takes: a path as a string, a model object as it is."""
    return str(model) if isinstance(model, str | Path) else model


class OpenVinoBackend:
    """OpenVINO CPU plugin, LATENCY hint; f32 unless another inference precision is asked
    (an AMX CPU would otherwise run bf16).

    The decoder is compiled with a static box count per bucket (1, 2, 4, ..., 32; boxes
    padded by repeating the last one, extra outputs dropped): a static-shape decoder runs
    faster than the dynamic one, and the image-side work shared by a call's boxes is only
    shared when they are batched. ``cache_dir`` keeps compiled models between processes
    (OpenVINO's CACHE_DIR); None compiles from scratch. ``encoder`` and ``decoder`` are IR
    files or ``openvino.Model`` objects (quantization measures models before saving them);
    either may be None for a backend that only encodes or only decodes. ``emulate_int8`` runs an
    INT8 model's quantization in f32 (exact integer results, slower): how a CPU without VNNI
    measures an artifact made for VNNI/AMX arithmetic.
    """

    name = "openvino"

    def __init__(
        self,
        encoder: Path | Any | None,
        decoder: Path | Any | None,
        threads: int | None = None,
        precision: str = "f32",
        cache_dir: Path | None = None,
        emulate_int8: bool = False,
    ) -> None:
        import openvino as ov

        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(OPENVINO_PRECISIONS)}")
        self._core = ov.Core()
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            self._core.set_property({"CACHE_DIR": str(cache_dir)})
        self.config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads or default_threads(),
        }
        self.emulated = emulate_int8
        if emulate_int8:
            # no low-precision transformations: with the weights folded to f32 (emulation.py) every
            # FakeQuantize and product runs in f32, the integer arithmetic without saturation
            self.config["LP_TRANSFORMS_MODE"] = False
            encoder, decoder = (self._emulated(m) if m is not None else None for m in (encoder, decoder))
        self.precision = precision
        self.encoder = self._core.compile_model(_model_arg(encoder), "CPU", self.config) if encoder else None
        self._encoder_request = self.encoder.create_infer_request() if self.encoder else None
        self._decoder = decoder
        self._decoders: dict[int, Any] = {}

    def _emulated(self, model: Path | Any) -> Any:
        from .emulation import fold_weights

        model = self._core.read_model(str(model)) if isinstance(model, str | Path) else model.clone()
        fold_weights(model)
        return model

    def actual_precision(self) -> str:
        """The inference precision the compiled encoder reports (what really runs)."""
        hint = self.encoder.get_property("INFERENCE_PRECISION_HINT")
        return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def encode(self, image: np.ndarray) -> np.ndarray:
        result = self._encoder_request.infer({ENCODER_INPUT: image})
        return np.array(result[self.encoder.output(ENCODER_OUTPUT)], copy=True)

    def _decoder_for(self, boxes: int) -> Any:
        """An infer request of the decoder compiled for exactly ``boxes`` boxes."""
        if boxes not in self._decoders:
            if self._decoder is None:
                raise RuntimeError("this export has no decoder")
            if isinstance(self._decoder, str | Path):
                model = self._core.read_model(str(self._decoder))
            else:
                model = self._decoder.clone()
            model.reshape({DECODER_INPUTS[1]: [boxes, 4]})
            self._decoders[boxes] = self._core.compile_model(model, "CPU", self.config).create_infer_request()
        return self._decoders[boxes]

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, iou = [], []
        for start in range(0, len(boxes), BOX_BUCKETS[-1]):
            chunk = np.ascontiguousarray(boxes[start : start + BOX_BUCKETS[-1]], dtype=np.float32)
            bucket = next(b for b in BOX_BUCKETS if b >= len(chunk))
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], bucket - len(chunk), axis=0)])
            # OpenVINO may write into an input tensor it was given: always feed a copy.
            result = self._decoder_for(bucket).infer({DECODER_INPUTS[0]: embeddings.copy(), DECODER_INPUTS[1]: padded})
            logits.append(np.array(result[DECODER_OUTPUTS[0]][: len(chunk)], copy=True))
            iou.append(np.array(result[DECODER_OUTPUTS[1]][: len(chunk)], copy=True))
        return np.concatenate(logits), np.concatenate(iou)
