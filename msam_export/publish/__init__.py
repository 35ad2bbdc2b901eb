"""Publish verified artifacts as a bundle (manifest.json, MODEL_CARD.md), check a bundle's
integrity, and gate a new bundle against the last one.

Importing this package stays light (no torch): ``check`` is a hashing tool. The one-shot
export+verify+publish mode lives in ``msam_export.publish.oneshot``."""

from .bundle import artifact_pairs, publish_bundle
from .check import FileStatus, check_bundle
from .gate import Check, GateLimits, passed, run_gate
from .manifest import SCHEMA, artifact_name, read_manifest

__all__ = [
    "SCHEMA",
    "Check",
    "FileStatus",
    "GateLimits",
    "artifact_name",
    "artifact_pairs",
    "check_bundle",
    "passed",
    "publish_bundle",
    "read_manifest",
    "run_gate",
]
