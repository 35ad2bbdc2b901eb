"""The project is ruff clean (lint and format), as the contributing rules ask."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff(args):
    ruff = shutil.which("ruff") or str(REPO / ".venv" / "bin" / "ruff")
    result = subprocess.run([ruff, *args, "."], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_imports_without_heavy_runtimes():
    """Importing the CLI must not pull in onnxruntime/openvino/nncf (fast --help)."""
    code = (
        "import sys, msam_export.cli; print(sorted(m for m in ('onnxruntime','openvino','nncf') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
