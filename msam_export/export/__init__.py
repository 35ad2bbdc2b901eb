"""Making artifacts: tracing to ONNX, converting to OpenVINO IR, parity against PyTorch."""

from .pipeline import WEIGHT_FORMATS, export_onnx, export_openvino

__all__ = ["WEIGHT_FORMATS", "export_onnx", "export_openvino"]
