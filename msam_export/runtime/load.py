"""Open a MODEL argument: a checkpoint, an ONNX export dir or an OpenVINO export dir."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MsamError
from ..zoo import ModelSpec, get_spec
from .backends import Backend, OnnxBackend, OpenVinoBackend, TorchBackend

OPENVINO_PRECISIONS = ("f32", "bf16", "f16")


@dataclass
class OpenedModel:
    backend: Backend
    spec: ModelSpec
    kind: str  # "pytorch", "onnx" or "openvino"
    source: dict[str, Any] = field(default_factory=dict)


def open_model(
    path: Path,
    threads: int | None = None,
    precision: str = "f32",
    cache_dir: Path | None = None,
    variant: str | None = None,
    trust_pickle: bool = False,
    need: str = "segmentation",
) -> OpenedModel:
    """A ready backend for ``path`` plus its model spec.

    ``precision`` applies to OpenVINO only (f32 by default, so that an AMX CPU
    does not silently run bf16); ``need`` names the step for error messages.
    """
    from ..checkpoints import load_checkpoint
    from ..export.metadata import read_metadata

    path = Path(path)
    if not path.exists():
        raise MsamError(f"{path}: no such file or directory")
    if path.is_file():
        loaded = load_checkpoint(path, variant=variant, trust_pickle=trust_pickle, need_decoder=need)
        backend = TorchBackend(loaded.model, threads=threads)
        return OpenedModel(backend, loaded.spec, "pytorch", loaded.provenance.to_dict())
    meta = read_metadata(path)
    spec = get_spec(meta["model"]["variant"])
    if "decoder" not in meta["graphs"]:
        raise MsamError(f"{path} is an encoder-only export: {need} needs a decoder graph")
    if meta["kind"] == "onnx":
        backend = OnnxBackend(path / "encoder.onnx", path / "decoder.onnx", threads=threads)
        return OpenedModel(backend, spec, "onnx", meta["source"])
    if meta["kind"] == "openvino":
        if precision not in OPENVINO_PRECISIONS:
            raise MsamError(f"unknown precision {precision!r}; choose one of {', '.join(OPENVINO_PRECISIONS)}")
        backend = OpenVinoBackend(path / "encoder.xml", path / "decoder.xml", threads, precision, cache_dir)
        return OpenedModel(backend, spec, "openvino", meta["source"])
    raise MsamError(f"{path}: unknown export kind {meta['kind']!r}")
