"""Calibration slices: stratified, deterministic, within box z ranges, round-tripped."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import REPO
from test_cli import run_cli

from msam_export.calibrate import load_calibration, select_slices
from msam_export.data import list_cases, load_case
from msam_export.errors import MsamError

SAMPLES = REPO / "msam_export" / "samples" / "imgs"


@pytest.fixture(scope="module")
def cases():
    return [load_case(p) for p in list_cases(SAMPLES)]


def test_selection_is_stratified_and_deterministic(cases):
    picked = select_slices(cases, 12, seed=3)
    assert picked == select_slices(cases, 12, seed=3)
    assert picked != select_slices(cases, 12, seed=4)
    per_modality = Counter(s.modality for s in picked)
    assert set(per_modality) == {"CT", "MR", "Microscope", "US", "Fundus"}
    # round robin over modalities: 2D modalities run out of cases, 3D ones do not
    assert per_modality["CT"] >= 3 and per_modality["MR"] >= 3 and per_modality["Fundus"] == 1
    assert len(set(picked)) == len(picked)


def test_3d_slices_lie_within_box_z_ranges(cases):
    by_name = {c.name: c for c in cases}
    for item in select_slices(cases, 40, seed=0):
        case = by_name[item.case]
        if case.is_3d:
            assert any(b[2] <= item.z <= b[5] for b in case.boxes)
        else:
            assert item.z is None


def test_cli_writes_a_loadable_file(tmp_path):
    out = tmp_path / "calib.npz"
    result = run_cli("calibrate", str(SAMPLES), "-o", str(out), "--default", "--n", "6", "--val-fraction", "0.34")
    assert result.returncode == 0, result.stderr
    assert "CT" in result.stdout and "held out" in result.stdout
    calib = load_calibration(out)
    assert calib.model == "litemedsam" and calib.images.shape == (6, 3, 256, 256)
    assert calib.validation.sum() == 2 and calib.val_embeddings.shape == (2, 256, 64, 64)
    assert calib.images.min() >= 0 and calib.images.max() <= 1
    assert all(1 <= c <= 8 for c in calib.box_counts)
    for image, boxes, embedding in calib.val_items():
        assert image.shape == (1, 3, 256, 256) and boxes.shape[1] == 4 and embedding.shape == (1, 256, 64, 64)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and boxes.max() <= 256


def test_not_a_calibration_file(tmp_path):
    np.savez(tmp_path / "x.npz", imgs=np.zeros(3))
    with pytest.raises(MsamError, match="not an msam-export calibration file"):
        load_calibration(tmp_path / "x.npz")
