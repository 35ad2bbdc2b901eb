"""What a checkpoint is: format, variant, parameter counts, provenance."""

from __future__ import annotations

from typing import Any

from ..zoo import PARTS
from .loader import LoadedCheckpoint


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
