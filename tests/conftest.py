"""Shared fixtures: paths to the carried fixtures and to ../shared when present."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
SHARED = Path(os.environ.get("MSAM_SHARED", REPO.parent / "shared"))
SHARED_GOLDEN = SHARED / "golden"
SHARED_DATA = SHARED / "data"

sys.path.insert(0, str(FIXTURES))  # make_weights.py, the golden generator's helper


def crop_3d(name: str, dest: Path, slices: int = 5) -> None:
    """A bundled 3D case cut to ``slices`` slices around its first box's middle, with that box's
    label only (keeps the slow tests short); written as ``dest/imgs/name`` and ``dest/gts/name``."""
    import numpy as np

    samples = REPO / "msam_export" / "samples"
    imgs, gts = np.load(samples / "imgs" / name), np.load(samples / "gts" / name)
    box = imgs["boxes"][0].copy()
    z0 = int((box[2] + box[5]) // 2) - slices // 2
    cut = slice(z0, z0 + slices)
    label = (gts["gts"][cut] == 1).astype(np.uint8)
    zs = np.nonzero(label.any(axis=(1, 2)))[0]
    box[2], box[5] = zs.min(), zs.max()
    np.savez(dest / "imgs" / name, imgs=imgs["imgs"][cut], boxes=box[None], spacing=imgs["spacing"])
    np.savez(dest / "gts" / name, gts=label, spacing=gts["spacing"])


def pytest_configure(config: pytest.Config) -> None:
    """The tests' OpenVINO compiled-model cache is their own (CLI subprocesses inherit it),
    never the user's."""
    config._msam_cache = tempfile.TemporaryDirectory(prefix="msam-test-cache-")
    os.environ["MSAM_CACHE_DIR"] = config._msam_cache.name


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = getattr(config, "_msam_cache", None)
    if cache is not None:
        cache.cleanup()


def golden_file(name: str) -> Path:
    """A golden file from the repo's fixtures, else from ../shared/golden; skip if neither."""
    for folder in (FIXTURES, SHARED_GOLDEN):
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"{name} is neither in tests/fixtures nor in {SHARED_GOLDEN} (shared/ absent)")


def shared_data() -> Path:
    if not (SHARED_DATA / "imgs").is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def litemedsam_exports(tmp_path_factory):
    """LiteMedSAM (real weights) exported once per session: {"onnx": dir, "openvino": dir}."""
    from msam_export.checkpoints import default_checkpoint_path
    from msam_export.export import pipeline

    root = tmp_path_factory.mktemp("litemedsam")
    pipeline.export_onnx(default_checkpoint_path(), root / "onnx")
    pipeline.export_openvino(root / "onnx", root / "openvino")
    return {"onnx": root / "onnx", "openvino": root / "openvino"}


@pytest.fixture(scope="session")
def litemedsam_full_exports(tmp_path_factory):
    """LiteMedSAM exported once per session with the full prompt interface (``--prompts full``):
    {"onnx": Artifact, "openvino": Artifact}."""
    from msam_export.checkpoints import default_checkpoint_path
    from msam_export.export import pipeline

    root = tmp_path_factory.mktemp("litemedsam-full")
    onnx = pipeline.export_onnx(default_checkpoint_path(), root / "onnx", prompts="full")
    return {"onnx": onnx, "openvino": pipeline.export_openvino(root / "onnx", root / "openvino")}


def sample_case(name: str) -> Path:
    """A case bundled with the package (msam_export/samples/imgs)."""
    return REPO / "msam_export" / "samples" / "imgs" / name


def write_checkpoint(state_dict: dict, path: Path, layout: str) -> Path:
    """Writes ``state_dict`` in a checkpoint layout, as make_weights.py's CLI would:
    "raw", "lightning-finetuned" (``model.``) or "lightning-distilled" (``student_encoder.``,
    encoder only)."""
    import torch

    if layout == "raw":
        obj = state_dict
    elif layout == "lightning-finetuned":
        obj = {"state_dict": {"model." + k: v for k, v in state_dict.items()}, "pytorch-lightning_version": "2.2.5"}
    elif layout == "lightning-distilled":
        prefix = "image_encoder."
        student = {"student_encoder." + k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        obj = {"state_dict": student, "pytorch-lightning_version": "2.2.5"}
    else:
        raise ValueError(layout)
    torch.save(obj, path)
    return path
