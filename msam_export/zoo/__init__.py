"""The model zoo: a spec per model plus the PyTorch modules it builds."""

from .model import BoxDecoder, MedSam
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
    "get_spec",
]
