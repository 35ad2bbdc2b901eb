"""Reading a checkpoint file into a Python object, safely by default."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError

SAFETENSORS_SUFFIXES = (".safetensors",)


def _looks_like_text(head: bytes) -> bool:
    stripped = head.lstrip()
    return stripped[:1] in (b"{", b"[") or (bool(stripped) and all(32 <= b < 127 or b in b"\r\n\t" for b in stripped))


def _looks_like_safetensors(path: Path, head: bytes) -> bool:
    if path.suffix in SAFETENSORS_SUFFIXES:
        return True
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len < 100_000_000 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: not a readable safetensors file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception message, kept short for a one-line error."""
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    return text[0].split(". ")[0][:160]


class _StubModule(nn.Module):
    """Stands in for a class that a trusted pickle names but that is not importable.

    nn.Module restores its state from ``__dict__``, so a stub still carries the
    parameters and buffers of the pickled module (and ``state_dict()`` works).
    """


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_StubModule,), {"__module__": "msam_export.checkpoints.stub"})


class _LenientPickle:
    """A ``pickle_module`` for ``torch.load`` that tolerates missing classes."""

    Unpickler = _LenientUnpickler
    load = staticmethod(pickle.load)


def _read_torch(path: Path, trust_pickle: bool) -> tuple[Any, bool]:
    """Returns (object, needed_full_pickle)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True), False
    except pickle.UnpicklingError as exc:
        # torch reports both a disallowed class ("GLOBAL x.y") and garbage bytes
        # ("Unsupported operand") as a weights-only failure; only the former is a pickle.
        if "GLOBAL" not in str(exc):
            raise CheckpointError(f"{path.name}: not a PyTorch checkpoint (not a zip archive or pickle)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f"{path.name}: not a readable PyTorch checkpoint, truncated or corrupt? ({_first_line(exc)})"
        ) from None
    except Exception:  # garbage bytes can trip the unpickler in any way (IndexError, KeyError, ...)
        raise CheckpointError(f"{path.name}: not a PyTorch checkpoint (not a zip archive or pickle)") from None
    if not trust_pickle:
        raise CheckpointError(
            f"{path.name} is a pickled Python object (e.g. torch.save(model)); loading it would run code "
            "from the file. Pass --trust-pickle if you trust its source, or re-save it as a state_dict."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_LenientPickle), True
    except Exception as exc:  # a trusted pickle may fail in any way
        raise CheckpointError(f"{path.name}: could not unpickle ({type(exc).__name__}: {_first_line(exc)})") from None


def read_checkpoint_file(path: Path, trust_pickle: bool = False) -> tuple[Any, str]:
    """Loads ``path``; returns (object, container) with container "safetensors",
    "torch" or "pickle" (the latter only with ``trust_pickle``)."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    if not head:
        raise CheckpointError(f"{path.name}: empty file")
    if _looks_like_safetensors(path, head):
        return _read_safetensors(path), "safetensors"
    if _looks_like_text(head):
        raise CheckpointError(f"{path.name}: a text/JSON file, not a checkpoint")
    obj, pickled = _read_torch(path, trust_pickle)
    return obj, "pickle" if pickled else "torch"
