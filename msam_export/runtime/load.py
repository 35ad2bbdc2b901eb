"""``open_model``: a checkpoint, an ONNX artifact or an OpenVINO artifact, ready to segment."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import open_artifact
from ..contract import Propagation
from ..data import Case, load_case
from ..errors import MsamError, require
from ..files import PathLike
from ..system import runs_natively
from ..zoo import ModelSpec, get_spec
from .backends import OPENVINO_PRECISIONS, Backend, OnnxBackend, OpenVinoBackend, default_cache_dir
from .predictor import Predictor, Segmentation

DEFAULT_CACHE = "default"


@dataclass
class Model:
    """An opened model: one backend plus the model's spec, and what it was opened from.

    ``kind`` is "pytorch", "onnx" or "openvino"; ``precision`` what its weights are ("fp32",
    "fp16", "int8"); ``source`` the checkpoint's provenance; ``record`` the artifact's
    export.json (None for a checkpoint); ``open_ms`` how long opening (and compiling) took;
    ``path`` what was opened (a cluster's workers open it again).
    """

    backend: Backend
    spec: ModelSpec
    kind: str
    precision: str = "fp32"
    source: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    open_ms: float = 0.0
    path: Path | None = None

    def predictor(self, propagation: Propagation | str | None = None) -> Predictor:
        """A predictor on this model; ``propagation`` overrides the spec's 3D rule."""
        return Predictor(self.backend, self.spec, propagation)

    def segment(
        self,
        image: np.ndarray,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> Segmentation:
        """2D: uint8 (H,W) or (H,W,3) image and N prompts -> label map (H,W) in ``.segs`` (prompt i
        is label i+1), each prompt's mask, and the low-res logits in ``.logits``.

        A prompt is a box (``boxes`` (N,4) XYXY in the image's pixels), clicks (``points`` (N,P,2)
        XY pixels with ``labels`` (N,P): 1 foreground, 0 background), or both, optionally with a
        previous call's ``.logits`` as ``mask`` (N,1,256,256). Clicks and masks need an artifact
        exported with ``--prompts full`` (or a checkpoint)."""
        if points is not None:
            points = np.asarray(points, dtype=np.float64)
            labels = np.asarray(labels) if labels is not None else None
            if points.ndim == 2 and (labels is None or np.ndim(labels) == 1):  # one prompt's clicks
                points, labels = points[None], None if labels is None else labels[None]
        return self.predictor().segment_2d(
            np.asarray(image), None if boxes is None else np.asarray(boxes), points=points, labels=labels, masks=mask
        )

    def segment_volume(
        self, volume: np.ndarray, boxes: np.ndarray, propagation: Propagation | str | None = None
    ) -> Segmentation:
        """3D: uint8 (D,H,W) volume, (N,6) boxes ``x_min,y_min,z_min,x_max,y_max,z_max`` (z inclusive)
        -> label map (D,H,W) in ``.segs``, by propagation from each box's middle slice."""
        return self.predictor(propagation).segment_3d(np.asarray(volume), np.asarray(boxes))

    def segment_case(self, case: Case | PathLike) -> Segmentation:
        """A challenge npz case (2D or 3D, by its name)."""
        return self.predictor().segment(case if isinstance(case, Case) else load_case(case))


def open_model(
    path: PathLike,
    *,
    threads: int | None = None,
    precision: str = "f32",
    cache_dir: PathLike | None = DEFAULT_CACHE,
    variant: str | None = None,
    trust_pickle: bool = False,
    need: str = "segmentation",
) -> Model:
    """Opens ``path``: a checkpoint file (PyTorch backend; needs the ``export`` extra), or an
    ONNX or OpenVINO artifact directory.

    Args:
        threads: CPU threads (default: every usable core).
        precision: OpenVINO inference precision, "f32" (default: what was verified), "bf16" or "f16".
        cache_dir: OpenVINO compiled-model cache; the default is per user
            (``~/.cache/msam-export/openvino``), None disables it.
        variant, trust_pickle: for checkpoints, as in ``load_checkpoint``.
        need: the step that opens the model, for error messages.
    """
    path = Path(path)
    if not path.exists():
        raise MsamError(f"{path}: no such file or directory")
    start = time.perf_counter()
    if path.is_file():
        model = _open_checkpoint(path, threads, variant, trust_pickle, need)
    else:
        model = _open_artifact(path, threads, precision, cache_dir, need)
    model.open_ms = (time.perf_counter() - start) * 1e3
    model.path = path.resolve()
    return model


def _open_checkpoint(path: Path, threads: int | None, variant: str | None, trust_pickle: bool, need: str) -> Model:
    require("torch", "export", "opening a PyTorch checkpoint")
    from ..checkpoints import load_checkpoint
    from .torch_backend import TorchBackend

    loaded = load_checkpoint(path, variant=variant, trust_pickle=trust_pickle, need_decoder=need)
    backend = TorchBackend(loaded.model, threads=threads)
    return Model(backend, loaded.spec, "pytorch", "fp32", loaded.provenance.to_dict())


def _open_artifact(path: Path, threads: int | None, precision: str, cache_dir: Any, need: str) -> Model:
    artifact = open_artifact(path)
    spec = get_spec(artifact.variant)
    encoder, decoder = artifact.graph("encoder"), artifact.graph("decoder")
    if decoder is None:
        raise MsamError(f"{path} is an encoder-only export: {need} needs a decoder graph")
    if artifact.kind == "onnx":
        backend: Backend = OnnxBackend(encoder, decoder, threads=threads)
    else:
        if precision not in OPENVINO_PRECISIONS:
            raise MsamError(f"unknown precision {precision!r}; choose one of {', '.join(OPENVINO_PRECISIONS)}")
        base = default_cache_dir() if cache_dir == DEFAULT_CACHE else (Path(cache_dir) if cache_dir else None)
        target = (artifact.record.get("quantization") or {}).get("target")
        emulate = artifact.precision == "int8" and not runs_natively(target)
        cache = base / cache_key(artifact.record, precision, emulate) if base is not None else None
        backend = OpenVinoBackend(encoder, decoder, threads, precision, cache, emulate_int8=emulate)
    record = artifact.record
    return Model(backend, spec, artifact.kind, artifact.precision, record.get("source") or {}, record)


def cache_key(record: dict[str, Any], precision: str, emulated: bool) -> str:
    """The compiled-model cache subdirectory of an artifact run at ``precision``.

    OpenVINO keys a blob compiled from a file by its path and not by every compile option: an
    artifact rewritten at the same path would load the old blob, and a bf16 compile of a file whose
    f32 blob is cached loaded that blob and crashed (SIGSEGV) at the first inference. So each
    artifact content (its files' sha256), inference precision and INT8 emulation has its own."""
    return f"{content_key(record)}-{precision}" + ("-emulated" if emulated else "")


def content_key(record: dict[str, Any]) -> str:
    """A short hash of an artifact's graph files (their sha256 in export.json)."""
    files = record.get("files") or {}
    digest = hashlib.sha256("".join(f"{n}:{f.get('sha256')}\n" for n, f in sorted(files.items())).encode())
    return digest.hexdigest()[:16]
