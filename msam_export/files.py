"""The one file toolkit every writer uses: hashing, atomic files, JSON with NaN as null, and
output directories that appear complete or not at all.

Files and directories are written under a temporary name beside their destination and
renamed at the end; a failure (or Ctrl-C) removes the temporary one and leaves an existing
destination untouched. Files are synced before the rename. What appears gets the
permissions the umask gives (``mkstemp``/``mkdtemp`` would leave 0600/0700, unreadable to
other users of a shared location). A staging directory carries the writer's process id, so
one left behind by a killed run is removed by the next run that writes beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import MsamError

PathLike = str | os.PathLike[str]
_PARTIAL = ".partial-"


def sha256_of(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_file(path: PathLike) -> dict[str, Any]:
    """{"sha256", "size_bytes"} of a file."""
    return {"sha256": sha256_of(path), "size_bytes": Path(path).stat().st_size}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_directory(directory: Path) -> None:
    """Best effort: make a rename in ``directory`` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_file(path: PathLike, mode: str = "w", newline: str | None = None) -> Iterator[IO]:
    """Yields a temporary file beside ``path`` opened with ``mode`` ("w" or "wb"); on success it
    is synced, given the umask's permissions and renamed to ``path``. MsamError when the
    directory cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise MsamError(f"cannot write {path} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, mode, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise MsamError(f"cannot write {path} ({exc.strerror or exc})") from None
        raise
    _sync_directory(path.parent)


def json_ready(value: Any) -> Any:
    """``value`` as it reads back from JSON: NaN and infinities become None, tuples lists,
    keys strings, numpy scalars Python numbers."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def write_json(path: PathLike, value: Any) -> None:
    """Writes ``value`` as indented JSON (NaN as null), atomically."""
    with atomic_file(path) as f:
        json.dump(json_ready(value), f, indent=2)
        f.write("\n")


def read_json(path: PathLike, what: str) -> Any:
    """Parsed JSON of ``path``; MsamError naming ``what`` when it is absent or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MsamError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MsamError(f"{path}: unreadable {what} ({exc})") from None


def check_output_dir(out_dir: PathLike, overwrite: bool) -> None:
    """Raises MsamError unless ``out_dir`` can be (re)created by this run."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MsamError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise MsamError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MsamError(f"cannot write {out_dir}: cannot create {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MsamError(f"cannot write {out_dir}: {parent} is not writable")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_stages(parent: Path, name: str) -> list[Path]:
    """Removes ``.NAME.partial-PID-*`` staging dirs in ``parent`` whose process is gone."""
    removed = []
    for stage in parent.glob(f".{name}{_PARTIAL}*"):
        pid = stage.name[len(f".{name}{_PARTIAL}") :].split("-", 1)[0]
        if stage.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(stage)
    return removed


@contextmanager
def staged_output(out_dir: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yields a staging directory beside ``out_dir``; renames it to ``out_dir`` (replacing an
    existing one when ``overwrite``) only if the block succeeds."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    parent = out_dir.resolve().parent
    remove_stale_stages(parent, out_dir.name)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{_PARTIAL}{os.getpid()}-", dir=parent))
    try:
        yield stage
        os.chmod(stage, 0o777 & ~_umask())
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
            os.replace(out_dir, old / "replaced")
        os.replace(stage, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _sync_directory(parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@contextmanager
def work_dir(beside: PathLike, name: str = "work") -> Iterator[Path]:
    """A temporary directory beside ``beside`` (same file system, so results can be renamed in),
    removed afterwards."""
    parent = Path(beside).resolve().parent
    with tempfile.TemporaryDirectory(prefix=f".{Path(beside).name}.{name}-", dir=parent) as tmp:
        yield Path(tmp)
