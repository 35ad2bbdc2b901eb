"""``export.json``: what an export is, how it was made, and how well it matches."""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

from ..errors import MsamError
from ..files import describe_file

EXPORT_FILE = "export.json"
SCHEMA = "msam-export/export@1"
PACKAGES = ("msam-export", "torch", "numpy", "onnx", "onnxruntime", "onnxsim", "openvino", "nncf")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def file_table(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    return {name: describe_file(folder / name) for name in names}


def write_metadata(folder: Path, meta: dict[str, Any]) -> None:
    (folder / EXPORT_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_metadata(folder: Path) -> dict[str, Any]:
    path = folder / EXPORT_FILE
    if not path.is_file():
        raise MsamError(f"{folder}: no {EXPORT_FILE}; not an msam-export artifact directory")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MsamError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise MsamError(f"{path}: unknown schema {meta.get('schema') if isinstance(meta, dict) else None!r}")
    return meta
