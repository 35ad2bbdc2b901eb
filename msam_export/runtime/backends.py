"""Inference backends behind one small protocol.

A backend is two methods: ``encode`` maps a preprocessed (1,3,S,S) float32
image to a (1,256,64,64) embedding; ``decode`` maps an embedding and (N,4)
S-frame boxes to low-res logits (N,1,256,256) and IoU predictions (N,1).
Everything above (pre/post-processing, 2D/3D, caching, timing) is shared.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..zoo import MedSam

ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"
DECODER_INPUTS = ("image_embeddings", "boxes")
DECODER_OUTPUTS = ("low_res_logits", "iou_predictions")


class Backend(Protocol):
    name: str
    precision: str

    def encode(self, image: np.ndarray) -> np.ndarray: ...

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class TorchBackend:
    """The PyTorch eager model: FP32 (what users run) or FP64 (the exact reference parity uses)."""

    name = "pytorch"

    def __init__(self, model: MedSam, threads: int | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.model = model.eval().to(dtype)
        self.dtype = dtype
        self.precision = {torch.float32: "f32", torch.float64: "f64"}[dtype]
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def encode(self, image: np.ndarray) -> np.ndarray:
        return self.model.encode(torch.from_numpy(image).to(self.dtype)).numpy()

    @torch.no_grad()
    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, iou = self.model.decode(
            torch.from_numpy(embeddings).to(self.dtype), torch.from_numpy(boxes).to(self.dtype)
        )
        return logits.numpy(), iou.numpy()


class OnnxBackend:
    """ONNX Runtime on the CPU execution provider."""

    name = "onnxruntime"
    precision = "f32"

    def __init__(self, encoder: Path, decoder: Path | None, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(encoder), options, providers=providers)
        self.decoder = ort.InferenceSession(str(decoder), options, providers=providers) if decoder else None

    def encode(self, image: np.ndarray) -> np.ndarray:
        return self.encoder.run([ENCODER_OUTPUT], {ENCODER_INPUT: image})[0]

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.decoder is None:
            raise RuntimeError("this export has no decoder")
        feeds = dict(zip(DECODER_INPUTS, (embeddings, boxes), strict=True))
        logits, iou = self.decoder.run(list(DECODER_OUTPUTS), feeds)
        return logits, iou


class OpenVinoBackend:
    """OpenVINO CPU plugin, LATENCY hint; f32 unless another precision is asked."""

    name = "openvino"

    def __init__(
        self,
        encoder: Path,
        decoder: Path | None,
        threads: int | None = None,
        precision: str = "f32",
        cache_dir: Path | None = None,
    ) -> None:
        import openvino as ov

        core = ov.Core()
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads or default_threads(),
        }
        self.precision = precision
        self.encoder = core.compile_model(str(encoder), "CPU", config)
        self.decoder = core.compile_model(str(decoder), "CPU", config) if decoder else None
        self._encoder_request = self.encoder.create_infer_request()
        self._decoder_request = self.decoder.create_infer_request() if self.decoder else None

    def actual_precision(self) -> str:
        """The inference precision the compiled encoder reports (what really runs)."""
        hint = self.encoder.get_property("INFERENCE_PRECISION_HINT")
        return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def encode(self, image: np.ndarray) -> np.ndarray:
        result = self._encoder_request.infer({ENCODER_INPUT: image})
        return np.array(result[self.encoder.output(ENCODER_OUTPUT)], copy=True)

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._decoder_request is None or self.decoder is None:
            raise RuntimeError("this export has no decoder")
        # OpenVINO may write into an input tensor it was given: always feed a copy.
        feeds = {DECODER_INPUTS[0]: embeddings.copy(), DECODER_INPUTS[1]: np.ascontiguousarray(boxes)}
        result = self._decoder_request.infer(feeds)
        logits = np.array(result[self.decoder.output(DECODER_OUTPUTS[0])], copy=True)
        iou = np.array(result[self.decoder.output(DECODER_OUTPUTS[1])], copy=True)
        return logits, iou
