"""``package``: a deployable folder that runs an OpenVINO artifact with the runtime alone.

The folder holds the artifact (``model/``), this package's Python code (``msam_export/``; the
runtime imports neither torch nor onnx nor nncf), ``requirements.txt`` pinning the runtime's
dependencies to the versions installed here, ``predict.sh`` in the challenge's form (a
directory of input npz files in, one ``segs`` npz per case out) and a ``Dockerfile`` for the
folder (python:3.11-slim; build it where a Docker engine runs).
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

from .artifact import open_artifact
from .errors import MsamError
from .files import PathLike, staged_output

RUNTIME_REQUIREMENTS = ("numpy", "openvino", "typer", "rich")
PACKAGE = Path(__file__).resolve().parent

PREDICT_SH = """#!/usr/bin/env bash
# Segments every challenge case in INPUTS (default /workspace/inputs) into OUTPUTS (default
# /workspace/outputs): one npz with "segs" per case, same file name. Needs: pip install -r requirements.txt
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
inputs="${1:-/workspace/inputs}"
outputs="${2:-/workspace/outputs}"
cache="${MSAM_CACHE_DIR:-$here/cache}"
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m msam_export segment \\
    "$here/model" "$inputs" "$outputs" --cache-dir "$cache" "${@:3}"
"""

DOCKERFILE = """FROM python:3.11-slim
WORKDIR /workspace/app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
ENTRYPOINT ["bash", "/workspace/app/predict.sh"]
"""


def pinned_requirements() -> str:
    """``name==version`` of each runtime dependency as installed here."""
    lines = []
    for name in RUNTIME_REQUIREMENTS:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            raise MsamError(f"{name} is not installed; package needs the runtime installed here") from None
    return "\n".join(lines) + "\n"


def _copy_runtime(dest: Path) -> None:
    """This package's Python files (no samples, no caches)."""
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "samples"))


def package(artifact: PathLike, output: PathLike, *, overwrite: bool = False) -> Path:
    """Writes the deployable folder ``output`` for the OpenVINO ``artifact``; returns its path."""
    source = open_artifact(artifact)
    if source.kind != "openvino":
        raise MsamError(f"{artifact}: a {source.kind} artifact; package takes an OpenVINO artifact")
    with staged_output(output, overwrite) as stage:
        shutil.copytree(source.path, stage / "model")
        _copy_runtime(stage / "msam_export")
        (stage / "requirements.txt").write_text(pinned_requirements())
        (stage / "predict.sh").write_text(PREDICT_SH)
        (stage / "predict.sh").chmod(0o755)
        (stage / "Dockerfile").write_text(DOCKERFILE)
    return Path(output)
