"""The body of a Ray actor: opens its models once (OpenVINO compiles them then), then serves cases.

``Worker`` is a plain class; the driver wraps it with ``ray.remote`` and its fault options. A
restarted actor runs ``__init__`` again with the same arguments, so it reopens the same models
(from the same shipped bytes when it cannot see the driver's files). Every method returns a
``(tag, value)`` pair: ``OK`` with the result, ``NEEDS_BYTES`` when a path-mode case is not
visible here (the driver resends it with its bytes) or ``BROKEN`` with why this worker cannot
run anything (its models did not open; the driver drops it and the case goes elsewhere).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MsamError
from ..system import host_and_cpu
from ..version import __version__
from .transfer import CaseInput, ModelFiles, Probe, stage_case, token_visible

OK, NEEDS_BYTES, BROKEN = "ok", "bytes", "broken"
SCRATCH_PREFIX = "msam-cluster-"


@dataclass(frozen=True)
class ModelOpen:
    """How a worker opens one model: its files, and ``open_model``'s options (``encoder``: a
    checkpoint loaded as a PyTorch module for its FP32 image embeddings)."""

    files: ModelFiles
    threads: int
    precision: str = "f32"
    cache_dir: str | None = "default"
    variant: str | None = None
    trust_pickle: bool = False
    need: str = "segment"
    encoder: bool = False


def _remove_dead_scratch(parent: Path) -> None:
    """Removes scratch dirs (``msam-cluster-PID-*``) whose worker process is gone (killed workers)."""
    for folder in parent.glob(f"{SCRATCH_PREFIX}*"):
        pid = folder.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass


class Worker:
    """One actor: ``models`` (role -> how to open it) opened at start; ``bundle`` is empty, or
    holds one object-store reference to {role: {file name: bytes}} for workers that do not see
    the driver's model files (``use_bundle``: open from it even where they do)."""

    def __init__(self, models: dict[str, ModelOpen], bundle: list[Any], use_bundle: bool = False) -> None:
        self.pid = os.getpid()
        self.restarted = _was_restarted()
        self.error: str | None = None
        self.models: dict[str, Any] = {}
        self.open_ms: dict[str, float] = {}
        self.predictors: dict[tuple[str, str | None], Any] = {}
        self._scratch: Path | None = None
        try:
            for role, spec in models.items():
                start = time.perf_counter()
                self.models[role] = self._open(role, spec, bundle, use_bundle)
                self.open_ms[role] = (time.perf_counter() - start) * 1e3
        except Exception as exc:  # reported by probe(); the driver drops this worker
            self.error = str(exc) if isinstance(exc, MsamError) else f"{type(exc).__name__}: {exc}"

    @property
    def scratch(self) -> Path:
        """This process's temporary dir for shipped files (made when first needed: bytes mode)."""
        if self._scratch is None:
            _remove_dead_scratch(Path(tempfile.gettempdir()))
            self._scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{self.pid}-"))
        return self._scratch

    def close(self) -> None:
        """Removes this worker's scratch dir (shipped models and cases) before the actor is stopped."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _open(self, role: str, spec: ModelOpen, bundle: list[Any], use_bundle: bool) -> Any:
        path = Path(spec.files.path)
        if use_bundle or not spec.files.visible():
            if not bundle:
                raise MsamError(f"{platform.node()} does not see {path} and no model bytes were sent")
            import ray

            path = spec.files.materialize(ray.get(bundle[0])[role], self.scratch / "models" / role)
        if spec.encoder:
            import torch

            from ..checkpoints import load_checkpoint

            torch.set_num_threads(spec.threads)
            return load_checkpoint(path, variant=spec.variant, trust_pickle=spec.trust_pickle).model
        from ..runtime import open_model

        return open_model(
            path,
            threads=spec.threads,
            precision=spec.precision,
            cache_dir=spec.cache_dir,
            variant=spec.variant,
            trust_pickle=spec.trust_pickle,
            need=spec.need,
        )

    def probe(self, probe: Probe | None) -> dict[str, Any]:
        """Who this worker is, whether its models opened, and whether it sees the run's files."""
        first = next(iter(self.models.values()), None)
        return {
            "pid": self.pid,
            **host_and_cpu(),
            "version": __version__,
            "restarted": self.restarted,
            "error": self.error,
            "sees": bool(probe is not None and probe.seen()),
            "open_ms": {k: round(v, 1) for k, v in self.open_ms.items()},
            "models_from": "bytes" if self._scratch is not None and (self._scratch / "models").is_dir() else "path",
            "compile_cache": getattr(getattr(first, "backend", None), "cache_dir", None),
        }

    def _predictor(self, role: str, propagation: str | None) -> Any:
        key = (role, propagation)
        if key not in self.predictors:
            self.predictors[key] = self.models[role].predictor(propagation)
        return self.predictors[key]

    def _where(self, transfer: str) -> dict[str, Any]:
        return {"transfer": transfer, "worker_pid": self.pid}

    def segment(
        self, inp: CaseInput, output: str, propagation: str | None, token: tuple[str, str] | None
    ) -> tuple[str, Any]:
        """One case into ``output`` (path mode) or back as its segs file's bytes: (row, bytes or None)."""
        from ..runtime.segment import segment_case

        if self.error:
            return BROKEN, self.error
        predictor = self._predictor("model", propagation)
        if inp.by_path:
            if not inp.visible() or (token is not None and not token_visible(token)):
                return NEEDS_BYTES, None
            return OK, (segment_case(predictor, Path(inp.case.path), Path(output)) | self._where("path"), None)
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            path, _ = stage_case(inp, folder)
            (folder / "out").mkdir()
            row = segment_case(predictor, path, folder / "out")
            if row["status"] != "ok":  # name the driver's file in the error, as a local run does
                row["status"] = row["status"].replace(str(path), inp.case.path)
                return OK, (row | self._where("bytes"), None)
            return OK, (row | self._where("bytes"), (folder / "out" / inp.name).read_bytes())
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def verify(self, inp: CaseInput, propagation: str | None, repeats: int, want_result: bool) -> tuple[str, Any]:
        """One verified case: (its report row, its ``CaseResult`` when ``want_result``)."""
        if self.error:
            return BROKEN, self.error
        if inp.by_path:
            if not inp.visible():
                return NEEDS_BYTES, None
            gts_dir = Path(inp.gt.path).parent if inp.gt else None
            return OK, self._verify(Path(inp.case.path), gts_dir, inp, propagation, repeats, want_result)
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            path, gts_dir = stage_case(inp, folder)
            return OK, self._verify(path, gts_dir, inp, propagation, repeats, want_result)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _verify(
        self, path: Path, gts_dir: Path | None, inp: CaseInput, propagation: str | None, repeats: int, want: bool
    ) -> tuple[dict[str, Any], Any]:
        from ..verify.report import verify_case

        reference, candidate = self._predictor("reference", propagation), self._predictor("candidate", propagation)
        try:
            result = verify_case(path, reference, candidate, gts_dir, repeats)
        except (MsamError, ValueError) as exc:  # as run_verify reports a bad case, with the driver's path
            return {"case": inp.name, "error": str(exc).replace(str(path), inp.case.path)}, None
        if not want:
            return result.row, None
        result.case = dataclasses.replace(result.case, path=Path(inp.case.path))
        return result.row, result

    def encode(self, images: np.ndarray) -> tuple[str, Any]:
        """(V,3,S,S) float32 encoder inputs -> (V,256,64,64) FP32 PyTorch embeddings, one slice
        per forward as calibrate runs them locally."""
        import torch

        if self.error:
            return BROKEN, self.error
        model = self.models["encoder"]
        with torch.no_grad():
            out = [model.encode(torch.from_numpy(images[i : i + 1])).numpy() for i in range(len(images))]
        return OK, np.concatenate(out)


def _was_restarted() -> bool:
    """Whether Ray restarted this actor (its previous process died)."""
    try:
        import ray

        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # outside an actor (direct use)
        return False
