"""Runtime: one protocol for PyTorch, ONNX Runtime and OpenVINO backends, and the
2D/3D predictor built on it."""

from .backends import Backend, OnnxBackend, OpenVinoBackend, TorchBackend, default_threads
from .load import OpenedModel, open_model
from .predictor import Predictor, Segmentation, Timings

__all__ = [
    "Backend",
    "OnnxBackend",
    "OpenVinoBackend",
    "OpenedModel",
    "Predictor",
    "Segmentation",
    "Timings",
    "TorchBackend",
    "default_threads",
    "open_model",
]
