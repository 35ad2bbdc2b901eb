"""Inference backends behind one small protocol.

A backend is two methods: ``encode`` maps a preprocessed (1,3,S,S) float32 image to a
(1,256,64,64) embedding; ``decode`` maps an embedding and (N,4) S-frame boxes to low-res
logits (N,1,256,256) and IoU predictions (N,1). A backend whose decoder has the full prompt
interface (``interface`` "full") also has ``decode_prompts`` (points, labels, a previous mask:
``contract.PromptArrays``); its ``decode`` feeds boxes as two corner points. Everything above
(pre/post-processing, 2D/3D, timing) is shared. ONNX Runtime and OpenVINO need no torch; the PyTorch backend
lives in ``torch_backend`` and is imported only when a checkpoint is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..artifact import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUT, ENCODER_OUTPUT, PROMPT_DECODER_INPUTS
from ..contract import PromptArrays, prompt_arrays
from ..errors import MsamError, require

OPENVINO_PRECISIONS = ("f32", "bf16", "f16")


class Backend(Protocol):
    name: str
    precision: str
    interface: str  # "box" or "full"

    def encode(self, image: np.ndarray) -> np.ndarray: ...

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def decode_prompts(self, embeddings: np.ndarray, prompts: PromptArrays) -> tuple[np.ndarray, np.ndarray]: ...


def interface_of(input_names: list[str]) -> str:
    """A decoder graph's prompt interface from its input names."""
    return "full" if list(input_names) == list(PROMPT_DECODER_INPUTS) else "box"


def box_only(name: str) -> MsamError:
    return MsamError(
        f"this {name} decoder takes boxes only; points and mask prompts need a decoder exported with --prompts full"
    )


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
        self.interface = interface_of([i.name for i in self.decoder.get_inputs()]) if self.decoder else "box"

    def encode(self, image: np.ndarray) -> np.ndarray:
        return self.encoder.run([ENCODER_OUTPUT], {ENCODER_INPUT: image})[0]

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.decoder is None:
            raise RuntimeError("this export has no decoder")
        if self.interface == "full":
            return self.decode_prompts(embeddings, prompt_arrays(boxes=boxes))
        feeds = dict(zip(DECODER_INPUTS, (embeddings, np.ascontiguousarray(boxes, dtype=np.float32)), strict=True))
        logits, iou = self.decoder.run(list(DECODER_OUTPUTS), feeds)
        return logits, iou

    def decode_prompts(self, embeddings: np.ndarray, prompts: PromptArrays) -> tuple[np.ndarray, np.ndarray]:
        if self.interface != "full":
            raise box_only(self.name)
        feeds = dict(zip(PROMPT_DECODER_INPUTS, (embeddings, *prompts.arrays()), strict=True))
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
        self._decoders: dict[tuple[int, int], Any] = {}
        self.interface = "box"
        if decoder is not None:
            graph = self._core.read_model(str(decoder)) if isinstance(decoder, str | Path) else decoder
            self.interface = interface_of([port.get_any_name() for port in graph.inputs])

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

    def _decoder_for(self, shapes: dict[str, tuple[int, ...]]) -> Any:
        """An infer request of the decoder compiled for exactly these prompt-input shapes."""
        key = tuple(sorted(shapes.items()))
        if key not in self._decoders:
            if self._decoder is None:
                raise RuntimeError("this export has no decoder")
            if isinstance(self._decoder, str | Path):
                model = self._core.read_model(str(self._decoder))
            else:
                model = self._decoder.clone()
            model.reshape({name: list(shape) for name, shape in shapes.items()})
            self._decoders[key] = self._core.compile_model(model, "CPU", self.config).create_infer_request()
        return self._decoders[key]

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.interface == "full":
            return self.decode_prompts(embeddings, prompt_arrays(boxes=boxes))
        return self._run_buckets(embeddings, [np.asarray(boxes, dtype=np.float32)], DECODER_INPUTS[1:])

    def decode_prompts(self, embeddings: np.ndarray, prompts: PromptArrays) -> tuple[np.ndarray, np.ndarray]:
        if self.interface != "full":
            raise box_only(self.name)
        return self._run_buckets(embeddings, list(prompts.arrays()), PROMPT_DECODER_INPUTS[1:])

    def _run_buckets(
        self, embeddings: np.ndarray, arrays: list[np.ndarray], names: tuple[str, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Runs the prompt rows (``arrays``, one per named input) in static-size buckets, the last
        row repeated to fill a bucket and the extra outputs dropped."""
        logits, iou = [], []
        for start in range(0, len(arrays[0]), BOX_BUCKETS[-1]):
            chunk = [np.ascontiguousarray(a[start : start + BOX_BUCKETS[-1]], dtype=np.float32) for a in arrays]
            rows = len(chunk[0])
            bucket = next(b for b in BOX_BUCKETS if b >= rows)
            feeds = {
                name: np.concatenate([a, np.repeat(a[-1:], bucket - rows, axis=0)])
                for name, a in zip(names, chunk, strict=True)
            }
            request = self._decoder_for({name: a.shape for name, a in feeds.items()})
            # OpenVINO may write into an input tensor it was given: always feed a copy.
            result = request.infer({DECODER_INPUTS[0]: embeddings.copy(), **feeds})
            logits.append(np.array(result[DECODER_OUTPUTS[0]][:rows], copy=True))
            iou.append(np.array(result[DECODER_OUTPUTS[1]][:rows], copy=True))
        return np.concatenate(logits), np.concatenate(iou)
