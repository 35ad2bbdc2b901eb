"""Checkpoint loading: format detection, safe reading, variant detection, provenance."""

from .default import default_checkpoint_path
from .layout import DISTILLED, FINETUNED, RAW
from .loader import LoadedCheckpoint, Provenance, load_checkpoint
from .summary import CheckpointInfo, inspect_checkpoint

__all__ = [
    "DISTILLED",
    "CheckpointInfo",
    "FINETUNED",
    "RAW",
    "LoadedCheckpoint",
    "Provenance",
    "default_checkpoint_path",
    "inspect_checkpoint",
    "load_checkpoint",
]
