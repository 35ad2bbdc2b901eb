"""INT8: NNCF for OpenVINO (``openvino --int8``), ONNX Runtime static QDQ (``onnx --int8``)."""

from .restore import Budget

__all__ = ["Budget", "quantize_onnx", "quantize_openvino"]


def __getattr__(name: str):  # keep `import msam_export.quantize` light (no nncf/openvino import)
    if name == "quantize_openvino":
        from .openvino import quantize_openvino

        return quantize_openvino
    if name == "quantize_onnx":
        from .onnx import quantize_onnx

        return quantize_onnx
    raise AttributeError(name)
