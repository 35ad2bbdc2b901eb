"""The model zoo: a spec per model plus the PyTorch modules it builds.

The specs import without torch; ``MedSam``, ``BoxDecoder`` and ``PromptDecoder`` (PyTorch modules) load on first use.
"""

from .spec import EMBEDDING_SHAPE, KEY_LAYOUT, LOW_RES_SIZE, PARTS, ZOO, KeyLayout, ModelSpec, get_spec

__all__ = [
    "EMBEDDING_SHAPE",
    "KEY_LAYOUT",
    "LOW_RES_SIZE",
    "PARTS",
    "ZOO",
    "BoxDecoder",
    "KeyLayout",
    "MedSam",
    "ModelSpec",
    "PromptDecoder",
    "get_spec",
]


def __getattr__(name: str):
    if name in ("BoxDecoder", "MedSam", "PromptDecoder"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
