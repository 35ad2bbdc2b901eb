"""The runtime without torch: segment with torch unimportable, a fresh `pip install .` venv, and a
`package` deploy folder run through its own predict.sh in its own fresh venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from msam_export.data import SAMPLES, list_cases
from msam_export.runtime import open_model
from msam_export.runtime.segment import segment

FORBIDDEN = ("torch", "onnx", "nncf", "scipy")
CASES = ("2DBox_US_HC18-000.npz", "3DBox_CT_MSDSpleen-spleen2.npz")  # a 2D case and a propagated 3D case


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    for name in CASES:
        shutil.copy(SAMPLES / "imgs" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def expected(litemedsam_exports, inputs, tmp_path_factory):
    """segs of the input cases from the full install (in this process)."""
    out = tmp_path_factory.mktemp("full")
    segment(open_model(litemedsam_exports["openvino"], cache_dir=None), inputs, out)
    found = {p.name: np.load(out / p.name)["segs"] for p in list_cases(inputs)}
    assert sorted(found) == sorted(CASES)
    return found


def assert_same_segs(out: Path, expected: dict[str, np.ndarray]) -> None:
    for name, segs in expected.items():
        np.testing.assert_array_equal(np.load(out / name)["segs"], segs, err_msg=name)


@pytest.mark.slow
def test_segment_runs_with_torch_unimportable(litemedsam_exports, inputs, expected, tmp_path):
    code = (
        "import sys\n"
        "for name in {!r}: sys.modules[name] = None  # any import of them now fails\n"
        "from msam_export.cli import main\n"
        "sys.argv = ['msam-export', 'segment', {!r}, {!r}, {!r}, '--cache-dir', {!r}]\n"
        "main()\n"
    ).format(
        FORBIDDEN,
        str(litemedsam_exports["openvino"]),
        str(inputs),
        str(tmp_path / "out"),
        str(tmp_path / "c"),
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_segs(tmp_path / "out", expected)


def test_a_missing_extra_is_one_line_naming_it(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from msam_export.cli import main\n"
        "sys.argv = ['msam-export', 'onnx', '--default', '-o', {!r}]\n"
        "main()\n"
    ).format(str(tmp_path / "x"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: msam-export onnx needs torch: pip install 'msam-export[export]'"


def venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    return python


def site_packages_mb(python: Path) -> float:
    code = "import site; print(site.getsitepackages()[0])"
    root = Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20


@pytest.mark.slow
def test_a_fresh_runtime_install_segments_like_the_full_one(litemedsam_exports, inputs, expected, tmp_path):
    python = venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)], check=True)
    listed = subprocess.run([str(python), "-m", "pip", "list"], capture_output=True, text=True, check=True).stdout
    installed = {line.split()[0].lower() for line in listed.splitlines()[2:]}
    assert not installed & set(FORBIDDEN), installed & set(FORBIDDEN)
    assert site_packages_mb(python) <= 300
    cli = tmp_path / "venv" / "bin" / "msam-export"
    out = tmp_path / "out"
    run = subprocess.run(
        [str(cli), "segment", str(litemedsam_exports["openvino"]), str(inputs), str(out)],
        capture_output=True,
        text=True,
        env=os.environ | {"MSAM_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert_same_segs(out, expected)
    missing = subprocess.run(
        [str(cli), "verify", str(litemedsam_exports["openvino"]), "--data", str(SAMPLES)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: msam-export verify needs torch: pip install 'msam-export[export]'"


@pytest.mark.slow
def test_package_runs_predict_sh_in_its_own_venv(litemedsam_exports, inputs, expected, tmp_path):
    from msam_export.package import package

    folder = package(litemedsam_exports["openvino"], tmp_path / "deploy")
    assert sorted(p.name for p in folder.iterdir()) == [
        "Dockerfile", "model", "msam_export", "predict.sh", "requirements.txt"
    ]  # fmt: skip
    assert "FROM python:3.11-slim" in (folder / "Dockerfile").read_text()
    assert [line.split("==")[0] for line in (folder / "requirements.txt").read_text().split()] == [
        "numpy", "openvino", "typer", "rich"
    ]  # fmt: skip
    python = venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(folder / "requirements.txt")], check=True)
    run = subprocess.run(
        ["bash", str(folder / "predict.sh"), str(inputs), str(tmp_path / "outputs")],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "MSAM_CACHE_DIR"} | {"PYTHON": str(python)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert_same_segs(tmp_path / "outputs", expected)
    assert any((folder / "cache").iterdir())  # the compiled-model cache predict.sh keeps


def test_package_refuses_an_onnx_artifact(tmp_path):
    from msam_export.errors import MsamError
    from msam_export.package import package

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "export.json").write_text(
        '{"schema": "msam-export/export@1", "kind": "onnx", "model": {"variant": "litemedsam"}, "options": {}}'
    )
    with pytest.raises(MsamError, match="a onnx artifact; package takes an OpenVINO artifact"):
        package(tmp_path / "a", tmp_path / "out")
    assert not (tmp_path / "out").exists()
