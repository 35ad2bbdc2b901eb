"""The package's shape: lower layers never import higher ones, the public API is complete, the
runtime imports without torch, and the README keeps its promises."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "msam_export"
# a module may import its own package and any package of a lower layer
LAYERS = {
    "version": 0, "errors": 0,
    "files": 1, "progress": 1, "system": 1,
    "data": 2, "metrics": 2, "contract": 2, "limits": 2,
    "zoo": 3, "artifact": 3,
    "checkpoints": 4,
    "runtime": 5, "calibrate": 5,
    "export": 6,
    "quantize": 7,
    "report": 8,
    "verify": 9,
    "cluster": 10,
    "publish": 11, "package": 11,
    "demo": 12,
    "cli": 13,
    "__init__": 14, "__main__": 14,
}  # fmt: skip


def unit(path: Path) -> str:
    """The top-level module or subpackage of the package that ``path`` belongs to."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[str]:
    """Every unit of the package that ``path`` imports, at run time (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)
               for n in ast.walk(node)}  # fmt: skip
    folders = list(path.relative_to(PACKAGE).parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = folders[: len(folders) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "msam_export":
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                found.add(target[0])
            else:  # from the package root: submodules by name, anything else from its __init__
                found |= {alias.name if alias.name in LAYERS else "__init__" for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "msam_export":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def test_every_unit_has_a_layer():
    units = {unit(p) for p in PACKAGE.rglob("*.py")}
    assert units <= set(LAYERS), sorted(units - set(LAYERS))


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = unit(path)
        for other in imported_units(path) - {own}:
            if other in LAYERS and not LAYERS[other] < LAYERS[own]:
                wrong.append(f"{path.relative_to(REPO)} imports {other}")
    assert not wrong, wrong


def test_the_public_api_has_a_function_per_command():
    import msam_export

    for name in (
        "inspect_checkpoint", "export_onnx", "export_openvino", "calibrate", "quantize_openvino", "quantize_onnx",
        "open_model", "segment", "verify", "report", "publish", "check_bundle", "gate", "package", "run_demo",
    ):  # fmt: skip
        assert callable(getattr(msam_export, name)), name


def test_runtime_and_cli_import_without_torch_or_heavy_runtimes():
    code = (
        "import sys, msam_export, msam_export.cli, msam_export.runtime, msam_export.publish;"
        "print(sorted(m for m in ('torch', 'onnx', 'nncf', 'scipy', 'onnxruntime', 'openvino') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_readme_is_a_users_guide():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for path in [REPO / "README.md", *(REPO / "docs").glob("*.md"), *PACKAGE.rglob("*.py")]:
        text = path.read_text()
        assert not re.search(r"session [0-9]|this session|lent (device|machine)|issue [0-9]", text, re.I), path
    for name in ("LICENSE", "CHANGELOG.md", "docs/PIPELINE.md", "docs/FORMATS.md", "docs/verify-report.png"):
        assert (REPO / name).is_file(), name


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    command = re.search(r"# 2\..*\n(.*)\n", readme).group(1)
    assert command == "bash scripts/setup.sh && .venv/bin/python -m pytest -q"
    assert command in (REPO / ".ci" / "run").read_text()


def _python_example() -> str:
    return re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _python_example()], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-2000:]
    first, second = result.stdout.strip().splitlines()[-2:]
    assert first.startswith("True ") and float(first.split()[1]) >= 0.99
    assert second == "(540, 800) [0 1]"
    assert (tmp_path / "out" / "verify.json").is_file() and (tmp_path / "out" / "verify.html").is_file()
