"""``load_checkpoint``: file -> (spec, model with weights, provenance)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..files import sha256_of
from ..zoo import MedSam, ModelSpec, get_spec
from .layout import canonicalize
from .reader import read_checkpoint_file
from .variant import check_decoder, match_variant


@dataclass
class Provenance:
    """Where the weights came from; recorded in every artifact's metadata."""

    path: str
    sha256: str
    size_bytes: int
    format: str
    variant: str
    variant_forced: bool
    has_decoder: bool
    ignored_keys: list[str] = field(default_factory=list)
    ignored_entries: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedCheckpoint:
    spec: ModelSpec
    model: MedSam
    provenance: Provenance


def _format_name(container: str, layout: str) -> str:
    if container in ("safetensors", "pickle"):
        return f"{container} ({layout})" if layout != "raw" else container
    return layout


def load_checkpoint(
    path: str | Path,
    variant: str | None = None,
    trust_pickle: bool = False,
    need_decoder: str | None = None,
) -> LoadedCheckpoint:
    """Loads any supported checkpoint into the matching zoo model (eval mode).

    Args:
        path: the checkpoint file.
        variant: force a zoo variant ("l0", "l1", "l2", "litemedsam").
        trust_pickle: allow unpickling a whole pickled module (runs its code).
        need_decoder: if set, the name of the step that needs a prompt encoder
            and mask decoder; an encoder-only checkpoint then raises.

    Raises:
        CheckpointError: one line naming the problem.
    """
    path = Path(path)
    if variant is not None:
        try:
            variant = get_spec(variant).name
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    obj, container = read_checkpoint_file(path, trust_pickle)
    unwrapped = canonicalize(obj, path.name)
    spec = match_variant(unwrapped.state_dict, path.name, forced=variant)
    has_decoder = check_decoder(unwrapped.state_dict, spec, path.name)
    if need_decoder and not has_decoder:
        raise CheckpointError(
            f"{path.name} is encoder-only ({unwrapped.layout}): {need_decoder} needs a prompt encoder and "
            "mask decoder; use a finetuned or raw checkpoint"
        )
    model = spec.build(with_decoder=has_decoder)
    model.load_state_dict(unwrapped.state_dict, strict=True)
    provenance = Provenance(
        path=str(path),
        sha256=sha256_of(path),
        size_bytes=path.stat().st_size,
        format=_format_name(container, unwrapped.layout),
        variant=spec.name,
        variant_forced=variant is not None,
        has_decoder=has_decoder,
        ignored_keys=unwrapped.ignored_keys,
        ignored_entries=unwrapped.ignored_entries,
    )
    return LoadedCheckpoint(spec, model.eval(), provenance)
