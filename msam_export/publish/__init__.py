"""Publish verified artifacts as a bundle (manifest.json, MODEL_CARD.md, verify pages), check
a bundle's integrity, and gate a new bundle against the last one."""

from .bundle import artifact_pairs, publish_bundle
from .check import BundleCheck, FileStatus, check_bundle
from .gate import Check, GateResult, gate, passed, run_gate
from .manifest import SCHEMA, read_manifest
from .release import BUILDERS, Release, parse_formats, publish

__all__ = [
    "BUILDERS",
    "SCHEMA",
    "BundleCheck",
    "Check",
    "FileStatus",
    "GateResult",
    "Release",
    "artifact_pairs",
    "check_bundle",
    "gate",
    "parse_formats",
    "passed",
    "publish",
    "publish_bundle",
    "read_manifest",
    "run_gate",
]
