"""Challenge npz I/O: real files load; each kind of bad file gives a DataError."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from msam_export.data import (
    Case,
    check_label_shape,
    list_cases,
    load_case,
    load_ground_truth,
    save_segmentation,
)
from msam_export.errors import DataError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
REAL_INPUTS = sorted((DATA / "imgs").glob("*.npz")) if DATA.is_dir() else []
needs_data = pytest.mark.skipif(not REAL_INPUTS, reason=f"no challenge data under {DATA}")


def write_npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)
    return path


def image_2d(h: int = 20, w: int = 30) -> np.ndarray:
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


def volume(d: int = 5, h: int = 20, w: int = 30) -> np.ndarray:
    return np.zeros((d, h, w), np.uint8)


def good_2d(tmp_path: Path, name: str = "2DBox_US_demo.npz", **over: object) -> Path:
    arrays: dict[str, object] = {"imgs": image_2d(), "boxes": np.array([[2, 3, 10, 12]])}
    arrays.update(over)
    return write_npz(tmp_path / name, **arrays)


def good_3d(tmp_path: Path, name: str = "3DBox_CT_demo.npz", **over: object) -> Path:
    arrays: dict[str, object] = {
        "imgs": volume(),
        "boxes": np.array([[2, 3, 1, 10, 12, 3]]),
        "spacing": np.array([2.5, 0.8, 0.8]),
    }
    arrays.update(over)
    return write_npz(tmp_path / name, **arrays)


def raises_data_error(path: Path, *fragments: str) -> str:
    with pytest.raises(DataError) as info:
        load_case(path)
    message = str(info.value)
    assert path.name in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------- real files


@needs_data
@pytest.mark.parametrize("path", REAL_INPUTS, ids=lambda p: p.name)
def test_real_input_and_ground_truth_load(path: Path) -> None:
    case = load_case(path)
    assert case.name == path.name and case.is_3d == path.name.startswith("3D")
    assert case.image.dtype == np.uint8 and case.boxes.shape[0] >= 1
    if case.is_3d:
        assert case.image.ndim == 3 and case.boxes.shape[1] == 6
        assert case.spacing is not None and len(case.spacing) == 3
    else:
        assert case.image.shape[2] == 3 and case.boxes.shape[1] == 4 and case.spacing is None
    assert case.modality == path.name.split("_")[1]
    gt_path = DATA / "gts" / path.name
    if gt_path.exists():
        gts, spacing = load_ground_truth(gt_path, case)
        assert gts.shape == case.spatial_shape
        assert spacing == case.spacing


@needs_data
def test_list_real_cases_sorted() -> None:
    files = list_cases(DATA / "imgs")
    assert files == sorted(files) and len(files) == len(REAL_INPUTS)


# --------------------------------------------------------------------------- good synthetic


def test_good_2d_and_3d(tmp_path: Path) -> None:
    case = load_case(good_2d(tmp_path))
    assert isinstance(case, Case) and not case.is_3d and case.modality == "US"
    assert case.boxes.dtype == np.int64 and case.boxes.tolist() == [[2, 3, 10, 12]]
    assert case.spatial_shape == (20, 30)
    vol = load_case(good_3d(tmp_path))
    assert vol.is_3d and vol.modality == "CT" and vol.spacing == (2.5, 0.8, 0.8)
    assert vol.image.shape == (5, 20, 30)


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 1)])
def test_grayscale_becomes_three_channels(tmp_path: Path, shape: tuple[int, ...]) -> None:
    gray = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    case = load_case(good_2d(tmp_path, imgs=gray))
    assert case.image.shape == (20, 30, 3)
    for c in range(3):
        assert np.array_equal(case.image[..., c], gray.reshape(20, 30))


def test_box_dtypes_are_kept(tmp_path: Path) -> None:
    floats = load_case(good_2d(tmp_path, boxes=np.array([[1.5, 2.0, 9.25, 11.0]], np.float32)))
    assert floats.boxes.dtype == np.float64 and floats.boxes[0, 2] == 9.25
    ints = load_case(good_2d(tmp_path, boxes=np.array([[1, 2, 9, 11]], np.int32)))
    assert ints.boxes.dtype == np.int64


def test_box_edges_that_are_legal(tmp_path: Path) -> None:
    # x_max == W and y_max == H (exclusive end); a one-slice z box; z_max == D - 1
    load_case(good_2d(tmp_path, boxes=np.array([[0, 0, 30, 20]])))
    load_case(good_3d(tmp_path, boxes=np.array([[0, 0, 2, 30, 20, 2]])))
    load_case(good_3d(tmp_path, boxes=np.array([[0, 0, 0, 5, 5, 4]])))


def test_3d_spacing_is_optional(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "3DBox_MR_x.npz", imgs=volume(), boxes=np.array([[2, 3, 1, 10, 12, 3]]))
    assert load_case(path).spacing is None


# --------------------------------------------------------------------------- bad files


def test_truncated_file(tmp_path: Path) -> None:
    path = good_2d(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    raises_data_error(path, "not a readable npz")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "2DBox_US_random.npz"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes())
    raises_data_error(path, "not a readable npz")


def test_json_text(tmp_path: Path) -> None:
    path = tmp_path / "2DBox_US_json.npz"
    path.write_text(json.dumps({"imgs": [[1, 2]], "boxes": [[0, 0, 1, 1]]}))
    raises_data_error(path, "not a readable npz")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "2DBox_US_empty.npz"
    path.write_bytes(b"")
    raises_data_error(path, "not a readable npz")


def test_npy_instead_of_npz(tmp_path: Path) -> None:
    path = tmp_path / "2DBox_US_npy.npz"
    with path.open("wb") as handle:
        np.save(handle, image_2d())
    raises_data_error(path, "not an npz archive")


def test_pickled_object_array_is_refused(tmp_path: Path) -> None:
    boxes = np.empty(1, dtype=object)
    boxes[0] = [1, 2, 3, 4]
    raises_data_error(good_2d(tmp_path, boxes=boxes), "not a readable npz")


def test_missing_file(tmp_path: Path) -> None:
    raises_data_error(tmp_path / "2DBox_US_absent.npz", "no such file")


def test_missing_boxes(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "2DBox_US_noboxes.npz", imgs=image_2d())
    raises_data_error(path, "missing key 'boxes'", "imgs")


def test_float_image(tmp_path: Path) -> None:
    path = good_2d(tmp_path, imgs=image_2d().astype(np.float32))
    raises_data_error(path, "float32", "uint8")


def test_2d_name_with_3d_volume(tmp_path: Path) -> None:
    raises_data_error(good_2d(tmp_path, imgs=volume()), "2D case", "3D volume")


def test_3d_name_with_2d_image(tmp_path: Path) -> None:
    raises_data_error(good_3d(tmp_path, imgs=np.zeros((20, 30), np.uint8)), "3D case")
    raises_data_error(good_3d(tmp_path, imgs=image_2d()), "3D case", "2D RGB")


def test_name_without_dimension_prefix(tmp_path: Path) -> None:
    raises_data_error(good_2d(tmp_path, name="Box_US_x.npz"), "'2D' or '3D'")


@pytest.mark.parametrize(
    ("box", "fragment"),
    [
        ([2, 3, 31, 12], "x range"),  # x_max > W
        ([2, 3, 10, 21], "y range"),  # y_max > H
        ([-1, 3, 10, 12], "x range"),
        ([10, 3, 10, 12], "x_min >= x_max"),
        ([12, 3, 10, 12], "x_min >= x_max"),
        ([2, 12, 10, 12], "y_min >= y_max"),
    ],
)
def test_bad_2d_boxes(tmp_path: Path, box: list[int], fragment: str) -> None:
    message = raises_data_error(good_2d(tmp_path, boxes=np.array([[1, 1, 5, 5], box])), fragment)
    assert "box 1" in message


@pytest.mark.parametrize(
    ("box", "fragment"),
    [
        ([2, 3, 1, 10, 12, 5], "z range"),  # z_max == D: z is an inclusive index
        ([2, 3, -1, 10, 12, 3], "z range"),
        ([2, 3, 3, 10, 12, 2], "z_min > z_max"),
        ([2, 3, 1, 31, 12, 3], "x range"),
    ],
)
def test_bad_3d_boxes(tmp_path: Path, box: list[int], fragment: str) -> None:
    raises_data_error(good_3d(tmp_path, boxes=np.array([box])), fragment)


def test_3d_boxes_without_z(tmp_path: Path) -> None:
    raises_data_error(good_3d(tmp_path, boxes=np.array([[2, 3, 10, 12]])), "(N,6)", "z extent")


@pytest.mark.parametrize(
    ("boxes", "fragment"),
    [
        (np.zeros((0, 4), np.int64), "no box"),
        (np.array([2, 3, 10, 12]), "(N,4)"),
        (np.array([[2.0, 3.0, np.nan, 12.0]]), "non-finite"),
        (np.array([[True, False, True, True]]), "dtype bool"),
    ],
)
def test_malformed_boxes(tmp_path: Path, boxes: np.ndarray, fragment: str) -> None:
    raises_data_error(good_2d(tmp_path, boxes=boxes), fragment)


def test_empty_volume(tmp_path: Path) -> None:
    path = good_3d(tmp_path, imgs=np.zeros((0, 20, 30), np.uint8))
    raises_data_error(path, "empty")


def test_empty_image(tmp_path: Path) -> None:
    raises_data_error(good_2d(tmp_path, imgs=np.zeros((20, 0, 3), np.uint8)), "empty")


@pytest.mark.parametrize("spacing", [np.array([1.0, 1.0]), np.array([1.0, 0.0, 1.0]), np.array([1.0, np.inf, 1.0])])
def test_bad_spacing(tmp_path: Path, spacing: np.ndarray) -> None:
    raises_data_error(good_3d(tmp_path, spacing=spacing), "'spacing'")


# --------------------------------------------------------------------------- ground truth


def test_ground_truth_checks(tmp_path: Path) -> None:
    case = load_case(good_3d(tmp_path))
    gts_dir = tmp_path / "gts"
    gts_dir.mkdir()
    good = write_npz(gts_dir / case.name, gts=np.zeros((5, 20, 30), np.uint8), spacing=np.array([2.5, 0.8, 0.8]))
    gts, spacing = load_ground_truth(good, case)
    assert gts.shape == (5, 20, 30) and spacing == (2.5, 0.8, 0.8)
    wrong_shape = write_npz(gts_dir / "3DBox_CT_a.npz", gts=np.zeros((5, 20, 31), np.uint8))
    with pytest.raises(DataError, match=r"3DBox_CT_a\.npz.*does not match"):
        load_ground_truth(wrong_shape, case)
    floats = write_npz(gts_dir / "3DBox_CT_b.npz", gts=np.zeros((5, 20, 30), np.float32))
    with pytest.raises(DataError, match=r"3DBox_CT_b\.npz.*float32"):
        load_ground_truth(floats)
    no_key = write_npz(gts_dir / "3DBox_CT_c.npz", segs=np.zeros((5, 20, 30), np.uint8))
    with pytest.raises(DataError, match="missing key 'gts'"):
        load_ground_truth(no_key)
    other_spacing = write_npz(gts_dir / "3DBox_CT_d.npz", gts=np.zeros((5, 20, 30), np.uint8), spacing=np.ones(3))
    with pytest.raises(DataError, match="spacing"):
        load_ground_truth(other_spacing, case)
    flat = write_npz(gts_dir / "3DBox_CT_e.npz", gts=np.zeros((20, 30), np.uint8))
    with pytest.raises(DataError, match="3 dimensions"):
        load_ground_truth(flat)


def test_check_label_shape_2d(tmp_path: Path) -> None:
    case = load_case(good_2d(tmp_path))
    check_label_shape(np.zeros((20, 30), np.uint16), case)
    with pytest.raises(DataError, match="segs.npz: shape"):
        check_label_shape(np.zeros((20, 30, 3), np.uint16), case, source="segs.npz")


# --------------------------------------------------------------------------- saving


def test_save_round_trip(tmp_path: Path) -> None:
    segs = np.zeros((5, 20, 30), np.int64)
    segs[1:3, 4:9, 5:12] = 300
    path = tmp_path / "3DBox_CT_demo.npz"
    save_segmentation(path, segs, spacing=(2.5, 0.8, 0.8))
    with np.load(path, allow_pickle=False) as saved:
        assert saved["segs"].dtype == np.uint16
        assert np.array_equal(saved["segs"], segs)
        assert saved["spacing"].tolist() == [2.5, 0.8, 0.8]
    save_segmentation(path, segs[1] > 0)  # overwrite; bool masks become labels 0/1
    with np.load(path, allow_pickle=False) as saved:
        assert saved["segs"].dtype == np.uint16 and saved["segs"].max() == 1
        assert "spacing" not in saved.files
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_into_missing_directory_creates_it(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "2DBox_US_x.npz"
    save_segmentation(path, np.zeros((4, 4), np.uint16))
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_save_where_the_parent_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match=f"cannot write {blocker / '2DBox_US_x.npz'} "):
        save_segmentation(blocker / "2DBox_US_x.npz", np.zeros((4, 4), np.uint16))
    assert blocker.read_text() == "x"


def test_save_into_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: directory permissions are not enforced")
        with pytest.raises(DataError, match="cannot write"):
            save_segmentation(locked / "2DBox_US_x.npz", np.zeros((4, 4), np.uint16))
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_save_when_creating_the_file_is_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only directory does, simulated so that it also runs as root."""
    real_open = os.open

    def deny(path: object, *args: object, **kwargs: object) -> int:
        if Path(str(path)).parent == tmp_path:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(DataError, match=r"^cannot write .*/2DBox_US_x\.npz \(Permission denied\)$"):
        save_segmentation(tmp_path / "2DBox_US_x.npz", np.zeros((4, 4), np.uint16))
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "2DBox_US_x.npz"
    save_segmentation(path, np.ones((4, 4), np.uint16))
    before = path.read_bytes()

    def half_write(handle: object, **arrays: object) -> None:
        handle.write(b"PK\x03\x04 partial")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", half_write)
    with pytest.raises(DataError, match="No space left on device"):
        save_segmentation(path, np.zeros((4, 4), np.uint16))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize(
    "segs", [np.zeros((4, 4), np.float32), np.full((4, 4), -1), np.full((4, 4), 70000), np.zeros(4, np.uint8)]
)
def test_save_rejects_non_label_maps(tmp_path: Path, segs: np.ndarray) -> None:
    with pytest.raises(DataError, match="2DBox_US_x.npz"):
        save_segmentation(tmp_path / "2DBox_US_x.npz", segs)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- listing


def test_list_cases(tmp_path: Path) -> None:
    good_2d(tmp_path, name="2DBox_US_b.npz")
    good_2d(tmp_path, name="2DBox_US_a.npz")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_cases(tmp_path)] == ["2DBox_US_a.npz", "2DBox_US_b.npz"]


def test_list_cases_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        list_cases(tmp_path / "absent")
    with pytest.raises(DataError, match=r"no \.npz files"):
        list_cases(tmp_path)
    (tmp_path / "f.npz").mkdir()  # a directory named like a case does not count
    with pytest.raises(DataError, match=r"no \.npz files"):
        list_cases(tmp_path)
    file = tmp_path / "plain"
    file.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        list_cases(file)
