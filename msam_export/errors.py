"""Errors that the CLI turns into one line on stderr and a non-zero exit code."""

from __future__ import annotations

import importlib
from types import ModuleType


class MsamError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""

    exit_code = 2


class CheckpointError(MsamError):
    """A checkpoint that cannot be read, is of the wrong variant, or lacks a part."""


class DataError(MsamError):
    """A challenge npz file that is malformed or inconsistent."""


class ParityError(MsamError):
    """An exported artifact does not reproduce the PyTorch model: exit code 1."""

    exit_code = 1


class RefusedError(MsamError):
    """An artifact refused for publishing (its verification failed or is not its own): exit code 1."""

    exit_code = 1


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Imports ``module``, or raises MsamError (exit 2) naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MsamError(f"{purpose} needs {module.split('.')[0]}: pip install 'msam-export[{extra}]'") from None
