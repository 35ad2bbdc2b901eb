"""Which zoo model a state dict belongs to, by key names and shapes."""

from __future__ import annotations

from functools import cache

import torch

from ..errors import CheckpointError
from ..zoo import ZOO, ModelSpec

Shapes = dict[str, tuple[int, ...]]


@cache
def expected_shapes(name: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Every state-dict entry of zoo model ``name`` with its shape (built on the meta device)."""
    model = ZOO[name].build(device="meta")
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def _expected(spec: ModelSpec, part: str) -> Shapes:
    return {k: s for k, s in expected_shapes(spec.name) if k.startswith(part + ".")}


def differences(found: Shapes, expected: Shapes, limit: int = 3) -> list[str]:
    """Human-readable first differences between two key->shape maps."""
    out: list[str] = []
    for key, shape in expected.items():
        if key not in found:
            out.append(f"missing {key} {list(shape)}")
        elif found[key] != shape:
            out.append(f"{key} has shape {list(found[key])}, expected {list(shape)}")
        if len(out) >= limit:
            return out
    out += [f"unexpected {k} {list(s)}" for k, s in found.items() if k not in expected][: limit - len(out)]
    return out


def shapes_of(sd: dict[str, torch.Tensor], part: str) -> Shapes:
    return {k: tuple(v.shape) for k, v in sd.items() if k.startswith(part + ".")}


def match_variant(sd: dict[str, torch.Tensor], name: str, forced: str | None = None) -> ModelSpec:
    """The spec whose image encoder matches ``sd`` exactly.

    With ``forced`` only that spec is tried, and a mismatch names the first
    differing keys and shapes.
    """
    part = "image_encoder"
    found = shapes_of(sd, part)
    if not found:
        raise CheckpointError(f"{name}: no image encoder weights")
    candidates = [ZOO[forced]] if forced else list(ZOO.values())
    scored = []
    for spec in candidates:
        expected = _expected(spec, part)
        diffs = differences(found, expected)
        if not diffs:
            return spec
        common = sum(1 for k, s in expected.items() if found.get(k) == s)
        scored.append((common / max(len(expected), len(found)), spec, diffs))
    score, best, diffs = max(scored, key=lambda t: t[0])
    if forced:
        raise CheckpointError(f"{name}: not a {best.title} checkpoint: {'; '.join(diffs)}")
    raise CheckpointError(
        f"{name}: image encoder matches no known model (closest {best.title}, {score:.0%} of keys): " + "; ".join(diffs)
    )


def check_decoder(sd: dict[str, torch.Tensor], spec: ModelSpec, name: str) -> bool:
    """True if ``sd`` holds a complete prompt encoder + mask decoder for ``spec``;
    False if it holds none; CheckpointError if it holds a broken one."""
    parts = ("prompt_encoder", "mask_decoder")
    found = {p: shapes_of(sd, p) for p in parts}
    if not any(found.values()):
        return False
    for p in parts:
        diffs = differences(found[p], _expected(spec, p))
        if diffs:
            raise CheckpointError(f"{name}: {p} does not match {spec.title}: {'; '.join(diffs)}")
    return True
