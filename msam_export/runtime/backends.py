"""Inference backends behind one small protocol.

A backend is two methods: ``encode`` maps a preprocessed (1,3,S,S) float32
image to a (1,256,64,64) embedding; ``decode`` maps an embedding and (N,4)
S-frame boxes to low-res logits (N,1,256,256) and IoU predictions (N,1).
Everything above (pre/post-processing, 2D/3D, caching, timing) is shared.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

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


BOX_BUCKETS = (1, 2, 4, 8, 16, 32)


class OpenVinoBackend:
    """OpenVINO CPU plugin, LATENCY hint; f32 unless another precision is asked.

    The decoder is compiled with a static box count per bucket (1, 2, 4, ..., 32;
    boxes padded by repeating the last one, extra outputs dropped): on these CPUs a
    static-shape decoder is 20-40% faster than the dynamic one, and the image-side
    work shared by the boxes of a call is only shared when they are batched.
    """

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

        self._core = ov.Core()
        if cache_dir is not None:
            self._core.set_property({"CACHE_DIR": str(cache_dir)})
        self._config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads or default_threads(),
        }
        self.precision = precision
        self.encoder = self._core.compile_model(str(encoder), "CPU", self._config)
        self._encoder_request = self.encoder.create_infer_request()
        self._decoder_path = decoder
        self._decoders: dict[int, Any] = {}

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
            if self._decoder_path is None:
                raise RuntimeError("this export has no decoder")
            model = self._core.read_model(str(self._decoder_path))
            model.reshape({DECODER_INPUTS[1]: [boxes, 4]})
            self._decoders[boxes] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
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
