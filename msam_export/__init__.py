"""msam-export: MedficientSAM / LiteMedSAM checkpoints to verified, fast CPU artifacts.

The public API: one function per command, keyword-only options, paths as ``str`` or
``PathLike``, each returning a small typed result. Importing the package is light: every
function loads its own layer (and its dependencies: torch, onnx, nncf, openvino) when called.

    import msam_export as mx

    onnx = mx.export_onnx("lite_medsam.pth", "out/onnx")          # -> Artifact(path, record)
    result = mx.verify(onnx.path, "data/")                           # -> VerifyResult
    model = mx.open_model(onnx.path)
    segs = model.segment(image, boxes).segs
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

# name -> module that defines it
_API = {
    "inspect_checkpoint": "msam_export.checkpoints",
    "default_checkpoint_path": "msam_export.checkpoints",
    "export_onnx": "msam_export.export",
    "export_openvino": "msam_export.export",
    "calibrate": "msam_export.calibrate",
    "quantize_openvino": "msam_export.quantize",
    "quantize_onnx": "msam_export.quantize",
    "open_model": "msam_export.runtime",
    "segment": "msam_export.runtime.segment",
    "verify": "msam_export.verify",
    "report": "msam_export.report",
    "publish": "msam_export.publish",
    "check_bundle": "msam_export.publish",
    "gate": "msam_export.publish",
    "package": "msam_export.package",
    "run_demo": "msam_export.demo",
    "open_artifact": "msam_export.artifact",
    "SAMPLES": "msam_export.data",
    "Limits": "msam_export.limits",
    "ReleaseLimits": "msam_export.limits",
    "Budget": "msam_export.quantize",
    "MsamError": "msam_export.errors",
    "Cluster": "msam_export.cluster",
}

__all__ = ["__version__", *_API]

# Five functions share their name with the subpackage that defines them. Importing a submodule
# sets it as an attribute of this package, which would hide the function; so these are imported
# here (none of them imports torch) and their functions bound over the submodules' names.
for _name in ("calibrate", "verify", "report", "publish", "package"):
    globals()[_name] = getattr(importlib.import_module(_API[_name]), _name)
del _name


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'msam_export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
