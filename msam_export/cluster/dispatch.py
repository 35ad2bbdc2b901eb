"""Feeding a run's cases to a pool of Ray actors: one case per actor at a time, the next case to
whichever actor finishes first (``ray.wait``), so that long 3D cases do not hold up the rest.

Each actor is probed first (``Worker.probe``): when it answers it joins, with path or bytes
transfer (``transfer.py``). Faults:

* The actor process dies mid-case (killed, out of memory, node lost): Ray restarts the actor
  (``max_restarts=-1``, which reopens its models) and runs the case again on it, up to
  ``TASK_RETRIES`` times (``max_task_retries``); the run never sees it. A segs file is written
  atomically under its final name, so a rerun replaces nothing half-written.
* The case kills the process every time: Ray gives up and raises ``RayActorError``; when the
  actor answers again, the case is reported failed once (``fail``) and the run goes on; when
  it does not (it cannot be restarted), the actor is dropped and the case goes to another one.
* An actor whose models do not open, or that runs another msam-export version, is dropped; no
  actor left is an MsamError.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MsamError
from ..version import __version__
from .workers import BROKEN, NEEDS_BYTES

TASK_RETRIES = 2  # reruns of a case on its restarted actor after the actor's process died
START_TIMEOUT_S = 600.0  # no actor ready by then: the cluster cannot place one (CPUs taken?)
ALIVE_TIMEOUT_S = 600.0  # an actor that does not answer within this after a failure is dropped


@dataclass
class Slot:
    """An actor that joined the run: its handle, what its probe said, "path" or "bytes"."""

    handle: Any
    info: dict[str, Any]
    transfer: str


@dataclass
class Dispatch:
    """One run over ``count`` cases. ``submit(slot, i)`` starts case i on an actor (an object
    ref of its ``(tag, value)``), ``finish(i, value)`` takes a result, ``fail(i, message)``
    reports a case that killed its worker every time."""

    ray: Any
    handles: list[Any]
    probe: Any
    submit: Callable[[Slot, int], Any]
    finish: Callable[[int, Any], None]
    fail: Callable[[int, str], None]
    force_bytes: bool = False
    slots: list[Slot] = field(default_factory=list)
    dropped: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self, count: int) -> list[Slot]:
        """Runs every case; returns the actors that took part."""
        self.queue: deque[int] = deque(range(count))
        self.idle: list[Slot] = []
        self.probes = {h.probe.remote(self.probe): h for h in self.handles}
        self.running: dict[Any, tuple[Slot, int]] = {}
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.queue or self.running:
            while self.queue and self.idle:
                slot, i = self.idle.pop(), self.queue.popleft()
                self.running[self.submit(slot, i)] = (slot, i)
            refs = [*self.running, *self.probes]
            if not refs:
                raise MsamError("no Ray worker could run the cases: " + "; ".join(self.errors[:3]))
            timeout = None if self.slots else max(0.0, deadline - time.monotonic())
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
            if not ready:
                raise MsamError(f"no Ray worker started within {START_TIMEOUT_S:.0f} s (are the cluster's CPUs taken?)")
            if ready[0] in self.probes:
                self._joined(ready[0])
            else:
                self._finished(ready[0])
        return self.slots

    def _joined(self, ref: Any) -> None:
        handle = self.probes.pop(ref)
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            return self._drop(handle, f"a worker died while starting ({_short(exc)})")
        if info["error"]:
            return self._drop(handle, f"{info['host']}: {info['error']}")
        if info["version"] != __version__:
            return self._drop(handle, f"{info['host']} runs msam-export {info['version']}, this is {__version__}")
        slot = Slot(handle, info, "bytes" if self.force_bytes or not info["sees"] else "path")
        self.slots.append(slot)
        self.idle.append(slot)

    def _finished(self, ref: Any) -> None:
        slot, i = self.running.pop(ref)
        try:
            tag, value = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            if self._alive(slot):
                self.fail(i, f"its worker process died {TASK_RETRIES + 1} times running it ({_short(exc)})")
                self.idle.append(slot)
            else:
                self.queue.appendleft(i)
                self._drop(slot.handle, f"{slot.info['host']}: worker lost ({_short(exc)})")
            return
        if tag == NEEDS_BYTES:  # the actor came back where it does not see the driver's files
            slot.transfer = "bytes"
            self.queue.appendleft(i)
        elif tag == BROKEN:
            self.queue.appendleft(i)
            return self._drop(slot.handle, f"{slot.info['host']}: {value}")
        else:
            self.finish(i, value)
        self.idle.append(slot)

    def _alive(self, slot: Slot) -> bool:
        try:
            self.ray.get(slot.handle.probe.remote(None), timeout=ALIVE_TIMEOUT_S)
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
            return False
        return True

    def _drop(self, handle: Any, why: str) -> None:
        self.errors.append(why)
        self.dropped.append(handle)
        self.slots = [s for s in self.slots if s.handle is not handle]
        self.ray.kill(handle)


def _short(exc: BaseException) -> str:
    """The first line of a Ray error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
