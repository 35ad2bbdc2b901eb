"""What a checkpoint is: format, variant, parameter counts, provenance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import PathLike
from ..zoo import PARTS
from .loader import LoadedCheckpoint, load_checkpoint


def parameter_counts(loaded: LoadedCheckpoint) -> dict[str, int]:
    """Parameters (not buffers) per part, plus the total."""
    counts = {}
    for part in PARTS:
        module = getattr(loaded.model, part)
        counts[part] = sum(p.numel() for p in module.parameters()) if module is not None else 0
    counts["total"] = sum(counts.values())
    return counts


def describe(loaded: LoadedCheckpoint) -> dict[str, Any]:
    """A JSON-ready description of a loaded checkpoint."""
    spec = loaded.spec
    prov = loaded.provenance.to_dict()
    return {
        "model": spec.title,
        "variant": spec.name,
        "input_size": [spec.input_size, spec.input_size],
        "resize": spec.resize,
        "propagation": spec.propagation,
        "parameters": parameter_counts(loaded),
        "missing_parts": [] if loaded.model.has_decoder else ["prompt_encoder", "mask_decoder"],
        **{k: prov[k] for k in ("path", "format", "sha256", "size_bytes", "variant_forced", "has_decoder")},
        "ignored_keys": prov["ignored_keys"],
        "ignored_entries": prov["ignored_entries"],
    }


def ignored_summary(keys: list[str]) -> str:
    """'177 keys (teacher_encoder.*)' style summary of ignored keys."""
    if not keys:
        return "none"
    prefixes = sorted({k.split(".")[0] for k in keys})
    return f"{len(keys)} keys ({', '.join(p + '.*' for p in prefixes)})"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint is (``inspect_checkpoint``); ``to_dict`` is the ``inspect --json`` document."""

    path: Path
    model: str
    variant: str
    variant_forced: bool
    format: str
    input_size: int
    resize: str
    parameters: dict[str, int]
    missing_parts: list[str]
    sha256: str
    ignored_keys: list[str]
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.details


def inspect_checkpoint(path: PathLike, *, variant: str | None = None, trust_pickle: bool = False) -> CheckpointInfo:
    """Loads a checkpoint and tells what it is: format, variant, parameters per part, input size,
    sha256, ignored keys. CheckpointError (one line) when it is not a supported checkpoint."""
    info = describe(load_checkpoint(path, variant=variant, trust_pickle=trust_pickle))
    return CheckpointInfo(
        path=Path(path),
        model=info["model"],
        variant=info["variant"],
        variant_forced=info["variant_forced"],
        format=info["format"],
        input_size=info["input_size"][0],
        resize=info["resize"],
        parameters=info["parameters"],
        missing_parts=info["missing_parts"],
        sha256=info["sha256"],
        ignored_keys=info["ignored_keys"],
        details=info,
    )
