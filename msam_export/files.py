"""File helpers: hashing and all-or-nothing output directories."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import MsamError


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_file(path: Path) -> dict[str, object]:
    """{"sha256", "size_bytes"} of a file."""
    return {"sha256": sha256_of(path), "size_bytes": Path(path).stat().st_size}


def check_output_dir(out_dir: Path, force: bool) -> None:
    """Raises MsamError unless ``out_dir`` can be (re)created by this run."""
    if out_dir.exists() and not out_dir.is_dir():
        raise MsamError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise MsamError(f"{out_dir} exists and is not empty (use --force to replace it)")
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MsamError(f"cannot write {out_dir}: cannot create {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MsamError(f"cannot write {out_dir}: {parent} is not writable")


@contextmanager
def staged_output(out_dir: Path, force: bool = False) -> Iterator[Path]:
    """Yields a temporary directory beside ``out_dir``; renames it to ``out_dir``
    only if the block succeeds, so the result appears complete or not at all."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, force)
    parent = out_dir.resolve().parent
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    try:
        yield stage
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
            os.replace(out_dir, old / "replaced")
        os.replace(stage, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """Yields a temporary file beside ``path`` opened with ``mode``; renames it to ``path``
    only if the block succeeds (MsamError when the directory cannot be written)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise MsamError(f"cannot write {path} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
