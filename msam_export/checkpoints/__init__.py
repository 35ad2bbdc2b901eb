"""Checkpoint loading: format detection, safe reading, variant detection, provenance."""

from .default import default_checkpoint_path
from .layout import DISTILLED, FINETUNED, RAW
from .loader import LoadedCheckpoint, Provenance, load_checkpoint

__all__ = [
    "DISTILLED",
    "FINETUNED",
    "RAW",
    "LoadedCheckpoint",
    "Provenance",
    "default_checkpoint_path",
    "load_checkpoint",
]
