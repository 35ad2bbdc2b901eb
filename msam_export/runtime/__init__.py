"""Runtime: PyTorch, ONNX Runtime and OpenVINO backends behind one protocol, the 2D/3D
predictor built on them, and ``open_model``. Needs no torch unless a checkpoint is opened."""

from .backends import Backend, OnnxBackend, OpenVinoBackend, default_cache_dir, default_threads
from .load import Model, open_model
from .predictor import Predictor, Segmentation, Timings

__all__ = [
    "Backend",
    "Model",
    "OnnxBackend",
    "OpenVinoBackend",
    "Predictor",
    "Segmentation",
    "Timings",
    "TorchBackend",
    "default_cache_dir",
    "default_threads",
    "open_model",
]


def __getattr__(name: str):
    if name == "TorchBackend":
        from .torch_backend import TorchBackend

        return TorchBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
