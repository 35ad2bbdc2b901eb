"""INT8: NNCF for OpenVINO (``quantize_openvino``), ONNX Runtime static QDQ (``quantize_onnx``)."""

from .qat import QatOptions
from .restore import Budget

__all__ = ["Budget", "QatOptions", "quantize_onnx", "quantize_openvino"]


def __getattr__(name: str):  # keep `import msam_export.quantize` light (no nncf/openvino import)
    if name == "quantize_openvino":
        from .openvino import quantize_openvino

        return quantize_openvino
    if name == "quantize_onnx":
        from .onnx import quantize_onnx

        return quantize_onnx
    raise AttributeError(name)
