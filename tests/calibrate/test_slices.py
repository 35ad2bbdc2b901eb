"""Calibration slices: stratified, deterministic, within box z ranges, round-tripped."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import REPO
from test_cli import run_cli

from msam_export.calibrate import load_calibration, select_slices
from msam_export.calibrate.slices import split_cases, spread_by_area
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


def test_validation_is_held_out_by_whole_case_per_modality(cases):
    train, held, warnings = split_cases(cases, 0.5)
    assert {c.name for c in train} & {c.name for c in held} == set()
    assert Counter(c.modality for c in held) == {"CT": 1, "MR": 1, "US": 1, "Microscope": 1}
    assert warnings == ["Fundus has one case (2DBox_Fundus_CHASEDB1-Image01L.npz): used for calibration, not validated"]
    train, held, _ = split_cases(cases, 0.2, ["2DBox_US_HC18-000.npz"])
    assert [c.name for c in held] == ["2DBox_US_HC18-000.npz"] and len(train) == len(cases) - 1
    with pytest.raises(MsamError, match="--val-cases: no case nope.npz in the data"):
        split_cases(cases, 0.2, ["nope.npz"])


def test_short_modalities_are_topped_up_with_flips(cases):
    picked = select_slices(cases, 10, seed=0, min_per_modality=3)
    fundus = [s for s in picked if s.modality == "Fundus"]
    assert len(fundus) == 3 and [s.flip for s in fundus] == [0, 1, 2]
    assert all(s.flip == 0 for s in picked if s.modality == "CT")


@pytest.mark.slow
def test_cli_writes_a_loadable_file(tmp_path):
    out = tmp_path / "calib.npz"
    result = run_cli(
        "calibrate",
        str(SAMPLES),
        "-o",
        str(out),
        "--default",
        "--n",
        "6",
        "--val-cases",
        "2DBox_US_HC18-000.npz,3DBox_CT_MSDSpleen-spleen2.npz",
        "--min-per-modality",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert "CT" in result.stdout and "validation cases" in result.stdout
    calib = load_calibration(out)
    assert calib.model == "litemedsam" and calib.images.shape[1:] == (3, 256, 256)
    assert (~calib.validation).sum() == 6
    assert sorted(set(calib.cases[calib.validation])) == ["2DBox_US_HC18-000.npz", "3DBox_CT_MSDSpleen-spleen2.npz"]
    assert not set(calib.cases[~calib.validation]) & set(calib.cases[calib.validation])
    assert calib.val_embeddings.shape == (int(calib.validation.sum()), 256, 64, 64)
    [(name, volume, boxes)] = calib.windows
    assert name == "3DBox_CT_MSDSpleen-spleen2.npz" and volume.shape == (12, 166, 164) and boxes.shape == (1, 6)
    assert calib.images.min() >= 0 and calib.images.max() <= 1
    for image, boxes, embedding in calib.val_items():
        assert image.shape == (1, 3, 256, 256) and boxes.shape[1] == 4 and embedding.shape == (1, 256, 64, 64)
        assert np.all(boxes[:, 2] > boxes[:, 0]) and boxes.max() <= 256


def test_a_slice_keeps_boxes_spread_over_object_sizes():
    sides = np.arange(1, 101, dtype=float)  # 100 square boxes, areas 1 .. 10,000, shuffled
    order = np.random.default_rng(0).permutation(100)
    boxes = np.stack([np.zeros(100), np.zeros(100), sides, sides], axis=1)[order]
    kept = spread_by_area(boxes, 16)
    areas = sorted(kept[:, 2] ** 2)
    assert len(kept) == 16 and areas[0] == 1 and areas[-1] == 10_000
    assert np.all(np.diff(np.flatnonzero(np.isin(sides[order], kept[:, 2]))) > 0)  # original order kept
    assert sum(a < 1_000 for a in areas) >= 4  # small objects are scored, not only the first boxes
    assert np.array_equal(spread_by_area(boxes[:5], 16), boxes[:5])


def test_not_a_calibration_file(tmp_path):
    np.savez(tmp_path / "x.npz", imgs=np.zeros(3))
    with pytest.raises(MsamError, match="not an msam-export calibration file .schema msam-export/calib@2.; rerun"):
        load_calibration(tmp_path / "x.npz")
