"""How files reach a Ray worker: by path where the worker sees the driver's files, else as bytes.

The rule, decided per worker and per run:

* A run's probe lists every input file (cases and their ground truth) with its size, the sha256
  of the smallest one and, for ``segment``, a token file with random content that the driver
  writes into the output directory. A worker that finds every file at the driver's absolute
  path with the same size, the same sha256 for the sampled file, and the token with its content
  shares the driver's file system: it gets paths, and ``segment`` writes into the output
  directory itself. Any other worker gets each case's bytes through the object store and sends
  its segs file's bytes back; the driver writes them.
* Per case, a path-mode worker checks again that the case (and its ground truth) has the
  driver's size, and for ``segment`` that the token is still there; if not (an actor restarted
  on another node) it asks for the bytes and the case is resent.
* A model (checkpoint file or artifact directory) is opened by path when every file has the
  driver's size and sha256, else from the bytes shipped once per worker pool.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..files import sha256_of

TOKEN_PREFIX = ".msam-cluster-probe-"


@dataclass(frozen=True)
class FileRef:
    """A driver file: absolute path and size in bytes."""

    path: str
    size: int

    @classmethod
    def of(cls, path: Path) -> FileRef:
        path = path.resolve()
        return cls(str(path), path.stat().st_size)

    def visible(self) -> bool:
        """Whether this process sees the file at the same path with the same size."""
        try:
            return os.stat(self.path).st_size == self.size
        except OSError:
            return False


@dataclass(frozen=True)
class Probe:
    """What a worker checks to tell whether it shares the driver's files: every file's size,
    one file's sha256 (``digest``: path, hex) and, for ``segment``, a token file in the output
    directory (``token``: path, content)."""

    files: tuple[FileRef, ...]
    digest: tuple[str, str] | None
    token: tuple[str, str] | None = None

    def seen(self) -> bool:
        """Runs on the worker: True when it sees all of the driver's files."""
        if not all(f.visible() for f in self.files):
            return False
        if self.digest is not None and sha256_of(self.digest[0]) != self.digest[1]:
            return False
        return self.token is None or token_visible(self.token)


def token_visible(token: tuple[str, str]) -> bool:
    """Whether the token file is at its path with its content."""
    try:
        return Path(token[0]).read_text() == token[1]
    except OSError:
        return False


@contextmanager
def probe_for(files: list[Path], output: Path | None = None) -> Iterator[Probe]:
    """The probe of a run over ``files``; with ``output``, writes the token file there for the
    run's duration (removed afterwards)."""
    refs = tuple(FileRef.of(p) for p in files)
    smallest = min(refs, key=lambda f: f.size, default=None)
    digest = (smallest.path, sha256_of(smallest.path)) if smallest else None
    if output is None:
        yield Probe(refs, digest)
        return
    content = secrets.token_hex(16)
    token = output.resolve() / f"{TOKEN_PREFIX}{content}"
    token.write_text(content)
    try:
        yield Probe(refs, digest, (str(token), content))
    finally:
        token.unlink(missing_ok=True)


@dataclass(frozen=True)
class CaseInput:
    """One case for a worker: by path (``data`` None) or with its file's bytes; the ground
    truth likewise (``gt`` None: the driver has none)."""

    name: str
    case: FileRef
    gt: FileRef | None = None
    data: bytes | None = None
    gt_data: bytes | None = None

    @property
    def by_path(self) -> bool:
        return self.data is None

    def visible(self) -> bool:
        """Path mode, on the worker: the case and its ground truth are where the driver has them."""
        return self.case.visible() and (self.gt is None or self.gt.visible())


def case_input(path: Path, gts_dir: Path | None, as_bytes: bool) -> CaseInput:
    """The input of case ``path`` (with ``gts_dir/NAME`` when the driver has it)."""
    gt_path = gts_dir / path.name if gts_dir is not None else None
    gt = FileRef.of(gt_path) if gt_path is not None and gt_path.is_file() else None
    case = FileRef.of(path)
    if not as_bytes:
        return CaseInput(path.name, case, gt)
    gt_data = Path(gt.path).read_bytes() if gt else None
    return CaseInput(path.name, case, gt, Path(case.path).read_bytes(), gt_data)


def stage_case(inp: CaseInput, folder: Path) -> tuple[Path, Path | None]:
    """Bytes mode, on the worker: writes the case to ``folder/imgs`` (and its ground truth to
    ``folder/gts``); returns (case path, gts dir or None)."""
    (folder / "imgs").mkdir(parents=True)
    path = folder / "imgs" / inp.name
    path.write_bytes(inp.data or b"")
    if inp.gt_data is None:
        return path, None
    (folder / "gts").mkdir()
    (folder / "gts" / inp.name).write_bytes(inp.gt_data)
    return path, folder / "gts"


@dataclass(frozen=True)
class ModelFiles:
    """A model on the driver: its absolute path (a checkpoint file or an artifact directory)
    and each file's (name relative to it, size, sha256)."""

    path: str
    is_dir: bool
    files: tuple[tuple[str, int, str], ...]

    def visible(self) -> bool:
        """On the worker: every file is at the driver's path with the same size and sha256."""
        root = Path(self.path)
        for name, size, digest in self.files:
            file = root / name if self.is_dir else root
            if not FileRef(str(file), size).visible() or sha256_of(file) != digest:
                return False
        return True

    def read(self) -> dict[str, bytes]:
        """On the driver: {relative name: bytes} of every file, to ship."""
        root = Path(self.path)
        return {name: (root / name if self.is_dir else root).read_bytes() for name, _, _ in self.files}

    def materialize(self, blobs: dict[str, bytes], folder: Path) -> Path:
        """On the worker: writes the shipped files under ``folder``; returns the path to open."""
        root = folder / Path(self.path).name
        for name, _, _ in self.files:
            file = root / name if self.is_dir else root
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(blobs[name])
        return root


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: hash a model once per run


def _digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_of(path)
    return _DIGESTS[key]


def model_files(path: Path) -> ModelFiles:
    """The files of a checkpoint or an artifact directory (every non-hidden file in it)."""
    path = path.resolve()
    if path.is_file():
        return ModelFiles(str(path), False, ((path.name, path.stat().st_size, _digest(path)),))
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    entries = tuple((str(p.relative_to(path)), p.stat().st_size, _digest(p)) for p in files)
    return ModelFiles(str(path), True, entries)
