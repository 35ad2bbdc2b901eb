"""From whatever a checkpoint holds to a canonical ``image_encoder.*`` /
``prompt_encoder.*`` / ``mask_decoder.*`` state dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..zoo import KEY_LAYOUT, PARTS, KeyLayout

RAW = "raw"
FINETUNED = "lightning-finetuned"
DISTILLED = "lightning-distilled"


@dataclass
class Unwrapped:
    """A canonical state dict plus what was dropped on the way."""

    state_dict: dict[str, torch.Tensor]
    layout: str
    ignored_keys: list[str] = field(default_factory=list)
    ignored_entries: list[str] = field(default_factory=list)


def _tensor_mapping(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, Mapping) and obj and all(isinstance(k, str) for k in obj):
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    return None


def find_state_dict(obj: Any, name: str) -> tuple[dict[str, torch.Tensor], bool, list[str]]:
    """Returns (flat tensor dict, is_lightning, other top-level entries)."""
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict()), False, []
    flat = _tensor_mapping(obj)
    if flat is not None:
        return flat, False, []
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                inner = inner.state_dict()
            flat = _tensor_mapping(inner)
            if flat is not None:
                others = sorted(str(k) for k in obj if k != key)
                return flat, key == "state_dict", others
    kind = type(obj).__name__
    raise CheckpointError(f"{name}: holds a {kind}, not a state_dict, a Lightning checkpoint or a SAM module")


def _strip(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def canonicalize(obj: Any, name: str, keys: KeyLayout = KEY_LAYOUT) -> Unwrapped:
    """Maps raw, Lightning-finetuned (``model.``) and Lightning-distilled
    (``student_encoder.``; ``teacher_encoder.*`` ignored) layouts to raw keys."""
    flat, lightning, entries = find_state_dict(obj, name)
    part_prefixes = tuple(p + "." for p in PARTS)
    if any(k.startswith(keys.distilled_prefix) for k in flat):
        student = _strip(flat, keys.distilled_prefix)
        sd = {f"{keys.encoder_part}.{k}": v for k, v in student.items()}
        ignored = sorted(k for k in flat if not k.startswith(keys.distilled_prefix))
        return Unwrapped(sd, DISTILLED, ignored, entries)
    finetuned = _strip(flat, keys.finetuned_prefix)
    if any(k.startswith(part_prefixes) for k in finetuned):
        sd = {k: v for k, v in finetuned.items() if k.startswith(part_prefixes)}
        ignored = sorted(k for k in flat if k[len(keys.finetuned_prefix) :] not in sd)
        return Unwrapped(sd, FINETUNED, ignored, entries)
    sd = {k: v for k, v in flat.items() if k.startswith(part_prefixes)}
    if not sd:
        sample = ", ".join(sorted(flat)[:3])
        raise CheckpointError(
            f"{name}: no image_encoder./prompt_encoder./mask_decoder. keys"
            f"{' (lightning)' if lightning else ''}; first keys: {sample}"
        )
    ignored = sorted(k for k in flat if k not in sd)
    return Unwrapped(sd, FINETUNED if lightning else RAW, ignored, entries)
