"""Named steps with timings, printed as they finish (or kept quiet)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


class Steps:
    """Times named steps; prints a spinner while one runs and a line when it ends.

    ``timings`` maps step name -> seconds, for the artifact's metadata.
    """

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[None]:
        label = f"{name}{f' ({detail})' if detail else ''}"
        start = time.perf_counter()
        if self.quiet:
            yield
        else:
            with self.console.status(f"{label} ...", spinner="dots"):
                yield
        seconds = time.perf_counter() - start
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)
        self.note(f"[green]done[/] {label} [dim]{seconds:.1f} s[/]")

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False)
