"""``Cluster``: a Ray connection plus one warm pool of actors that keep their opened models."""

from __future__ import annotations

import atexit
import logging
import math
import re
import socket
import statistics
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MsamError, require
from ..files import PathLike, atomic_file
from ..runtime.backends import default_cache_dir
from ..runtime.load import DEFAULT_CACHE, Model, open_model
from ..system import cpu_info
from .dispatch import TASK_RETRIES, Dispatch, Slot
from .transfer import case_input, model_files, probe_for
from .workers import ModelOpen, Worker

ADDRESS = re.compile(r"^(ray://)?[\w.\-]+:\d+$")
ENCODE_CHUNK = 8  # most slices per encoder job
CONNECT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 2.0


def model_path(model: Model | PathLike) -> Path:
    """Where a model was opened from: a path as given; an opened model's ``path`` (when
    ``Model`` carries one) or, for a checkpoint, its provenance path."""
    if not isinstance(model, Model):
        return Path(model)
    path = getattr(model, "path", None) or (model.source.get("path") if model.kind == "pytorch" else None)
    if not path:
        raise MsamError("the Ray workers open the model themselves: pass its path (this opened model has none)")
    return Path(path)


def _opening(
    model: Model | PathLike,
    threads: int,
    need: str,
    *,
    precision: str = "f32",
    cache_dir: PathLike | None = DEFAULT_CACHE,
    variant: str | None = None,
    trust_pickle: bool = False,
) -> ModelOpen:
    """How workers open ``model`` with ``threads`` threads: the options as given for a path; an
    opened ``Model``'s own inference precision, compile cache and forced variant."""
    path = model_path(model)
    if not path.exists():
        raise MsamError(f"{path}: no such file or directory")
    if isinstance(model, Model) and model.kind == "openvino":
        precision, cache = model.backend.precision, model.backend.cache_dir
        cache_dir = DEFAULT_CACHE if cache == str(default_cache_dir()) else cache  # each worker's own default
    if isinstance(model, Model) and model.source.get("variant_forced"):
        variant = model.source.get("variant")
    cache = None if cache_dir is None else str(cache_dir)
    return ModelOpen(model_files(path), threads, precision, cache, variant, trust_pickle, need)


class Cluster:
    """Cases of ``segment``, ``verify`` and calibrate's FP32 embeddings spread over Ray actors.

    Each actor takes ``threads`` CPUs and keeps its opened (compiled) models between cases and
    between runs with the same models; a run with other models replaces the pool. See
    ``transfer.py`` for how files reach the workers and ``dispatch.py`` for faults."""

    def __init__(self, ray: Any, address: str, threads: int, started: bool, owns: bool, transfer: str) -> None:
        self.ray, self.address, self.threads = ray, address, threads
        self.started, self.owns, self.transfer = started, owns, transfer
        self._key: tuple | None = None
        self._actors: list[Any] = []
        self._bundle: list[Any] = []
        self.workers: list[dict[str, Any]] = []  # the last run's actors: their probes and transfer mode

    @classmethod
    def connect(cls, address: str, threads: int | None = None, *, transfer: str = "auto") -> Cluster:
        """Connects to Ray: ``local`` starts a cluster in this process on this machine's usable
        CPUs (shut down at close), ``auto`` finds a running one, ``HOST:PORT`` its head and
        ``ray://HOST:PORT`` Ray Client. ``threads``: CPU threads per actor [default: the smallest
        node's CPUs]. ``transfer``: "auto" (paths where workers see the driver's files) or "bytes"."""
        ray = require("ray", "ray", "--ray")
        if address not in ("local", "auto") and not ADDRESS.match(address):
            raise MsamError(f"--ray {address!r}: expected local, auto, HOST:PORT or ray://HOST:PORT")
        if transfer not in ("auto", "bytes"):
            raise MsamError(f"transfer {transfer!r}: expected auto or bytes")
        if threads is not None and threads < 1:
            raise MsamError("--threads must be >= 1")
        owns = not ray.is_initialized()
        if owns:
            _init(ray, address)
        cluster = cls(ray, address, threads or 1, address == "local" and owns, owns, transfer)
        atexit.register(cluster.close)  # also on Ctrl-C or an error that ends the process
        try:
            cluster.threads = threads or cluster._smallest_node()
        except MsamError:
            cluster.close()
            raise
        return cluster

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops the actors; shuts down the cluster this process started (or disconnects)."""
        if self.ray.is_initialized():
            self._drop_pool()
            if self.owns:
                self.ray.shutdown()
        self.owns = False

    # ------------------------------------------------------------------ the pool

    def _node_cpus(self) -> list[float]:
        return [n["Resources"].get("CPU", 0.0) for n in self.ray.nodes() if n.get("Alive")]

    def _smallest_node(self) -> int:
        cpus = [c for c in self._node_cpus() if c >= 1]
        if not cpus:
            raise MsamError(f"Ray cluster {self.address} has no node with CPUs")
        return int(min(cpus))

    def _actor_count(self, threads: int) -> int:
        """Actors of ``threads`` CPUs each that fit on the alive nodes (per node, rounded down)."""
        cpus = self._node_cpus()
        count = sum(int(c // threads) for c in cpus)
        if count < 1:
            raise MsamError(f"--threads {threads}: no Ray node has {threads} CPUs (largest: {max(cpus, default=0):g})")
        return count

    def _pool(self, models: dict[str, ModelOpen], threads: int) -> list[Any]:
        """The actors for ``models`` (the current pool when it has the same ones)."""
        key = (tuple(sorted(models.items())), threads, self.transfer)
        if key == self._key and self._actors:
            return self._actors
        self._drop_pool()
        shared = self.address == "local" and self.transfer == "auto"  # one machine: the files are here
        self._bundle = [] if shared else [self.ray.put({role: m.files.read() for role, m in models.items()})]
        actor = self.ray.remote(num_cpus=threads, max_restarts=-1, max_task_retries=TASK_RETRIES)(Worker)
        forced = self.transfer == "bytes"
        self._actors = [actor.remote(models, self._bundle, forced) for _ in range(self._actor_count(threads))]
        self._key = key
        return self._actors

    def worker_info(self) -> list[dict[str, Any]]:
        """Asks the current pool's actors who they are now: host, CPU, process id and whether Ray
        restarted them (their previous process died)."""
        infos = self.ray.get([a.probe.remote(None) for a in self._actors])
        return [{k: info[k] for k in ("host", "cpu", "pid", "restarted", "error")} for info in infos]

    def _drop_pool(self) -> None:
        """Stops the actors, letting idle ones remove their scratch files first (a busy one is
        killed after ``CLOSE_TIMEOUT_S``; the next worker on its machine removes what it left)."""
        closing = [handle.close.remote() for handle in self._actors]
        if closing:
            self.ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        for handle in self._actors:
            self.ray.kill(handle)
        self._actors, self._bundle, self._key = [], [], None

    @contextmanager
    def _running(self, dispatch: Dispatch, output: Path | None = None, names: Iterable[str] = ()) -> Iterator[None]:
        """Around a run: records its workers and drops the actors it lost; on Ctrl-C (or any
        error) closes the cluster; removes temporary files a killed worker left in ``output``."""
        try:
            yield
        except BaseException:
            self.close()
            raise
        finally:
            self._actors = [a for a in self._actors if all(a is not d for d in dispatch.dropped)]
            self.workers = [_worker_row(s) for s in dispatch.slots]
            if output is not None:
                names = set(names)
                for tmp in output.glob(".*.tmp"):
                    if tmp.name[1:].rsplit(".", 2)[0] in names:
                        tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ segment

    def segment(
        self,
        model: Model | PathLike,
        cases: list[Path],
        output: Path,
        *,
        threads: int | None = None,
        propagation: str | None = None,
        on_case: Callable[[str], None] | None = None,
        precision: str = "f32",
        cache_dir: PathLike | None = DEFAULT_CACHE,
        variant: str | None = None,
        trust_pickle: bool = False,
    ) -> list[dict[str, Any]]:
        """Segments ``cases`` into ``output`` on the actors; returns the rows in the input order:
        a local run's row plus ``transfer`` ("path" or "bytes") and ``worker_pid``. ``model`` is a
        path (or an opened ``Model`` that knows its path); the options are ``open_model``'s, for a path."""
        output, threads = Path(output).resolve(), threads or self.threads
        cases = [Path(p).resolve() for p in cases]
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MsamError(f"cannot create {output} ({exc.strerror})") from None
        opening = _opening(
            model,
            threads,
            "segment",
            precision=precision,
            cache_dir=cache_dir,
            variant=variant,
            trust_pickle=trust_pickle,
        )
        actors = self._pool({"model": opening}, threads)
        rows: list[dict[str, Any]] = [{} for _ in cases]

        def finish(i: int, value: tuple[dict[str, Any], bytes | None]) -> None:
            row, segs = value
            if segs is not None:  # bytes mode: the driver writes the file
                with atomic_file(output / cases[i].name, "wb") as f:
                    f.write(segs)
            rows[i] = row
            if on_case:
                on_case(cases[i].name)

        def fail(i: int, message: str) -> None:
            finish(i, ({"case": cases[i].name, "status": f"error: {message}"}, None))

        with probe_for(cases, output) as probe:

            def submit(slot: Slot, i: int) -> Any:
                inp = case_input(cases[i], None, slot.transfer == "bytes")
                return slot.handle.segment.remote(inp, str(output), propagation, probe.token)

            dispatch = Dispatch(self.ray, actors, probe, submit, finish, fail, self.transfer == "bytes")
            with self._running(dispatch, output, {p.name for p in cases}):
                dispatch.run(len(cases))
        return rows

    # ------------------------------------------------------------------ verify

    def verify(
        self,
        candidate: Model | PathLike,
        reference: Model | PathLike,
        cases: list[Path],
        gts_dir: Path | None,
        limits: Any,
        *,
        repeats: int = 1,
        on_case: Callable[[str], None] | None = None,
        on_result: Callable[[Any], None] | None = None,
        propagation: str | None = None,
        trust_pickle: bool = False,
    ) -> dict[str, Any]:
        """``verify.report.run_verify`` with the cases verified on the actors: the same verify.json
        document (rows in the input order; each latency measured on, and naming, its worker's
        host and CPU), plus ``cluster``: the address, the workers and how many cases went by
        path and by bytes. ``on_result`` sees each ``CaseResult`` in completion order."""
        from ..verify.report import build_report

        opened = [
            m if isinstance(m, Model) else open_model(m, trust_pickle=trust_pickle) for m in (candidate, reference)
        ]
        if opened[0].spec.name != opened[1].spec.name:
            raise MsamError(f"candidate is {opened[0].spec.title} but the reference is {opened[1].spec.title}")
        roles = {
            "candidate": _opening(candidate, self.threads, "verify", trust_pickle=trust_pickle),
            "reference": _opening(reference, self.threads, "verify", trust_pickle=trust_pickle),
        }
        actors = self._pool(roles, self.threads)
        cases = [Path(p).resolve() for p in cases]
        gts = Path(gts_dir).resolve() if gts_dir is not None else None
        rows: list[dict[str, Any]] = [{} for _ in cases]

        def finish(i: int, value: tuple[dict[str, Any], Any]) -> None:
            rows[i], result = value
            if on_result is not None and result is not None:
                on_result(result)
            if on_case:
                on_case(cases[i].name)

        def fail(i: int, message: str) -> None:
            finish(i, ({"case": cases[i].name, "error": message}, None))

        with probe_for([*cases, *_gt_files(cases, gts)]) as probe:

            def submit(slot: Slot, i: int) -> Any:
                inp = case_input(cases[i], gts, slot.transfer == "bytes")
                return slot.handle.verify.remote(inp, propagation, repeats, on_result is not None)

            dispatch = Dispatch(self.ray, actors, probe, submit, finish, fail, self.transfer == "bytes")
            with self._running(dispatch):
                dispatch.run(len(cases))
        rule = str(opened[0].predictor(propagation).propagation)
        cold = _cold_start(rows, dispatch.slots)
        report = build_report(opened[0], opened[1], cases, gts, rows, limits, repeats, rule, cold)
        return report | {"cluster": self._summary(dispatch.slots, rows)}

    def _summary(self, slots: list[Slot], rows: list[dict[str, Any]]) -> dict[str, Any]:
        transfers = [s.transfer for s in slots]
        return {
            "address": self.address,
            "threads_per_worker": self.threads,
            "workers": [_worker_row(s) for s in slots],
            "transfer": {mode: transfers.count(mode) for mode in ("path", "bytes")},
            "cases": len(rows),
        }

    # ------------------------------------------------------------------ calibrate

    def encoder(
        self, checkpoint: Path, variant: str | None = None, trust_pickle: bool = False
    ) -> Callable[[np.ndarray], np.ndarray]:
        """A function (V,3,S,S) float32 encoder inputs -> (V,256,64,64) FP32 embeddings of
        ``checkpoint``'s PyTorch image encoder, computed on the actors in chunks of slices."""
        opening = ModelOpen(
            model_files(Path(checkpoint)), self.threads, variant=variant, trust_pickle=trust_pickle, encoder=True
        )

        def encode(images: np.ndarray) -> np.ndarray:
            actors = self._pool({"encoder": opening}, self.threads)
            size = max(1, min(ENCODE_CHUNK, math.ceil(len(images) / (2 * len(actors)))))
            chunks = [images[i : i + size] for i in range(0, len(images), size)]
            out: list[np.ndarray] = [np.zeros(0)] * len(chunks)

            def finish(i: int, value: np.ndarray) -> None:
                out[i] = value

            def fail(i: int, message: str) -> None:
                raise MsamError(f"embedding slices {i * size}-{i * size + len(chunks[i]) - 1}: {message}")

            dispatch = Dispatch(self.ray, actors, None, lambda s, i: s.handle.encode.remote(chunks[i]), finish, fail)
            with self._running(dispatch):
                dispatch.run(len(chunks))
            return np.concatenate(out) if out else np.zeros((0, 256, 64, 64), np.float32)

        return encode


def _auto_address() -> str | None:
    """The head ``auto`` would join (RAY_ADDRESS, else the last ``ray start`` here), or None."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address("auto")
    except Exception:  # Ray's own lookup (private API): ray.init reports what it finds
        return None


def _reachable(address: str) -> None:
    """MsamError unless something accepts TCP connections at ``HOST:PORT`` (ray.init would wait
    minutes for a head that is gone)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise MsamError(f"--ray {address}: no Ray head answers there ({exc.strerror or exc})") from None


def _init(ray: Any, address: str) -> None:
    """``ray.init`` quietly (workers' output stays in Ray's logs); MsamError when it cannot connect."""
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address == "local":
        options |= {"num_cpus": cpu_info()["usable_cpus"], "include_dashboard": False}
    else:
        target = _auto_address() if address == "auto" else address
        if target:
            _reachable(target)
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise MsamError(f"--ray {address}: cannot connect ({str(exc).strip().splitlines()[0]})") from None


def _gt_files(cases: list[Path], gts: Path | None) -> list[Path]:
    return [gts / p.name for p in cases if gts is not None and (gts / p.name).is_file()]


def _worker_row(slot: Slot) -> dict[str, Any]:
    info = slot.info
    keys = {"host": "host", "cpu": "cpu", "pid": "pid", "models": "models_from"}
    return {k: info.get(v) for k, v in keys.items()} | {"transfer": slot.transfer}


def _cold_start(rows: list[dict[str, Any]], slots: list[Slot]) -> dict[str, Any]:
    """``run_verify``'s cold-start block, from the first worker (its open time and compile cache)."""
    timed = [r["latency"] for r in rows if "latency" in r]
    first = slots[0].info if slots else {}
    warm = [t["encoder_ms_median"] for t in timed if t["encoder_ms_median"] is not None]
    return {
        "open_ms": first.get("open_ms", {}).get("candidate"),
        "first_encoder_call_ms": timed[0]["first_encoder_call_ms"] if timed else None,
        "warm_encoder_ms_median": statistics.median(warm) if warm else math.nan,
        "compile_cache": first.get("compile_cache"),
    }
