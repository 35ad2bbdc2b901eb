"""Runtime: one protocol for PyTorch, ONNX Runtime and OpenVINO backends."""

from .backends import Backend, OnnxBackend, OpenVinoBackend, TorchBackend, default_threads

__all__ = ["Backend", "OnnxBackend", "OpenVinoBackend", "TorchBackend", "default_threads"]
