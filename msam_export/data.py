"""Challenge npz files: reading inputs and ground truth with validation, writing outputs.

File format (CVPR24 "MedSAM on laptop"): the name starts with ``2D`` or ``3D``, e.g.
``2DBox_US_x.npz`` / ``3DBox_CT_y.npz`` (the second ``_`` token is the modality).
Inputs hold ``imgs`` (2D: (H,W,3) uint8; 3D: (D,H,W) uint8), ``boxes`` and, for 3D,
``spacing`` (one value per array axis, D,H,W order). Ground truth holds ``gts`` (labels
1..N, same spatial shape) and, for 3D, ``spacing``. Outputs hold ``segs`` (uint16).

Box conventions, checked against the files in shared/data (every box there equals the
tight bounding box of its ground-truth label, in inclusive pixel indices):

* 2D boxes are ``[x_min, y_min, x_max, y_max]``; 3D boxes ``[x_min, y_min, z_min,
  x_max, y_max, z_max]``; x indexes W, y indexes H, z indexes D.
* x and y need ``0 <= min < max``, with ``x_max <= W`` and ``y_max <= H`` (an exclusive
  end is accepted, so ``W`` itself is allowed). A zero-width box is rejected: SAM gets
  a degenerate prompt from it, and no box in the real data has one (the narrowest is
  one step wide). Note that a one-pixel-wide object's tight inclusive box would have
  min == max; none occurs in the data we have.
* z is a tight inclusive slice range (PIPELINE.md, "3D cases"): ``0 <= z_min <= z_max
  <= D - 1``; ``z_min == z_max`` is a legal one-slice box.

Every problem raises ``DataError`` with a one-line message naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError, MsamError
from .files import atomic_file

SAMPLES = Path(__file__).resolve().parent / "samples"
"""The real sample cases shipped with the package: ``imgs/`` and ``gts/`` (see its ATTRIBUTION.md)."""

_FLOAT_KINDS = "f"
_INT_KINDS = "iu"


def modality_of(name: str) -> str:
    """The modality in a challenge file name: its second ``_``-separated token
    ("2DBox_US_HC18-000.npz" -> "US"), or "" if none."""
    parts = Path(name).stem.split("_")
    return parts[1] if len(parts) > 1 else ""


@dataclass(frozen=True, eq=False)
class Case:
    """One challenge input file, validated.

    image: 2D (H,W,3) uint8 (grayscale inputs are repeated to 3 channels);
           3D (D,H,W) uint8.
    boxes: 2D (N,4) [x_min,y_min,x_max,y_max]; 3D (N,6)
           [x_min,y_min,z_min,x_max,y_max,z_max]; int64 or float64 as stored.
    spacing: 3D voxel spacing per array axis (D,H,W order) if the file has one;
             None for 2D cases (scored in pixels).
    """

    name: str
    path: Path
    is_3d: bool
    image: np.ndarray
    boxes: np.ndarray
    spacing: tuple[float, ...] | None = None

    @property
    def modality(self) -> str:
        """Second ``_``-separated token of the name ("US", "CT", ...), or "" if none."""
        return modality_of(self.name)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """(H,W) for 2D, (D,H,W) for 3D: the shape a label map of this case has."""
        return tuple(self.image.shape[:2] if not self.is_3d else self.image.shape)


# --------------------------------------------------------------------------- reading


def _dimensionality(path: Path) -> bool:
    """True for a 3D case, False for 2D, from the file name."""
    prefix = path.name[:2]
    if prefix not in ("2D", "3D"):
        raise DataError(f"{path}: file name must start with '2D' or '3D'")
    return prefix == "3D"


def _read_npz(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read the named arrays of an npz file eagerly, with pickles refused."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: holds a single .npy array, not an npz archive")
        with loaded as archive:
            missing = [k for k in required if k not in archive.files]
            if missing:
                found = ", ".join(archive.files) or "none"
                raise DataError(f"{path}: missing key '{missing[0]}' (keys found: {found})")
            wanted = [k for k in (*required, *optional) if k in archive.files]
            return {k: archive[k] for k in wanted}
    except DataError:
        raise
    except Exception as exc:  # numpy/zipfile raise many types for bad bytes
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable npz archive ({reason})") from exc


def _check_nonempty(path: Path, key: str, arr: np.ndarray) -> None:
    if arr.size == 0:
        raise DataError(f"{path}: '{key}' is empty (shape {arr.shape})")


def _check_image(path: Path, imgs: np.ndarray, is_3d: bool) -> np.ndarray:
    """Validate ``imgs``; return (H,W,3) or (D,H,W) uint8."""
    if imgs.dtype != np.uint8:
        raise DataError(f"{path}: 'imgs' has dtype {imgs.dtype}, expected uint8")
    if is_3d:
        if imgs.ndim != 3:
            raise DataError(f"{path}: 3D case but 'imgs' has shape {imgs.shape}, expected (D,H,W)")
        if imgs.shape[-1] == 3:
            raise DataError(
                f"{path}: 3D case but 'imgs' has shape {imgs.shape}, which looks like a 2D RGB image (H,W,3)"
            )
        _check_nonempty(path, "imgs", imgs)
        return imgs
    if imgs.ndim == 3 and imgs.shape[-1] not in (1, 3):
        raise DataError(
            f"{path}: 2D case but 'imgs' has shape {imgs.shape}, which looks like a 3D "
            "volume; expected (H,W), (H,W,1) or (H,W,3)"
        )
    if imgs.ndim not in (2, 3):
        raise DataError(f"{path}: 2D case but 'imgs' has shape {imgs.shape}, expected (H,W,3)")
    _check_nonempty(path, "imgs", imgs)
    if imgs.ndim == 2:
        imgs = imgs[..., None]
    return np.repeat(imgs, 3, axis=2) if imgs.shape[2] == 1 else imgs


def _check_boxes(path: Path, boxes: np.ndarray, image: np.ndarray, is_3d: bool) -> np.ndarray:
    """Validate ``boxes`` against the image; return them as int64 or float64."""
    cols = 6 if is_3d else 4
    layout = "[x_min,y_min,z_min,x_max,y_max,z_max]" if is_3d else "[x_min,y_min,x_max,y_max]"
    if boxes.dtype.kind not in _INT_KINDS + _FLOAT_KINDS:
        raise DataError(f"{path}: 'boxes' has dtype {boxes.dtype}, expected integers or floats")
    if boxes.ndim != 2 or boxes.shape[1] != cols:
        hint = " (a 3D box needs a z extent)" if is_3d and boxes.shape[-1:] == (4,) else ""
        raise DataError(f"{path}: 'boxes' has shape {boxes.shape}, expected (N,{cols}) {layout}{hint}")
    if boxes.shape[0] == 0:
        raise DataError(f"{path}: 'boxes' holds no box")
    values = boxes.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{path}: 'boxes' holds non-finite values")
    for index, box in enumerate(values):
        problem = _box_problem(box, image.shape, is_3d)
        if problem:
            shown = [v.item() for v in boxes[index]]
            raise DataError(f"{path}: box {index} {shown}: {problem}")
    return boxes.astype(np.int64 if boxes.dtype.kind in _INT_KINDS else np.float64)


def _box_problem(box: np.ndarray, shape: tuple[int, ...], is_3d: bool) -> str | None:
    """Why one box is invalid for an image of ``shape``, or None."""
    if is_3d:
        depth, height, width = shape
        x0, y0, z0, x1, y1, z1 = box
    else:
        height, width = shape[:2]
        x0, y0, x1, y1 = box
    for axis, lo, hi, size in (("x", x0, x1, width), ("y", y0, y1, height)):
        if lo >= hi:
            return f"{axis}_min >= {axis}_max"
        if lo < 0 or hi > size:
            return f"{axis} range [{lo:g}, {hi:g}] outside the image (0..{size})"
    if is_3d:
        if z0 > z1:
            return "z_min > z_max"
        if z0 < 0 or z1 > depth - 1:
            return f"z range [{z0:g}, {z1:g}] outside the volume (slices 0..{depth - 1})"
    return None


def _check_spacing(path: Path, spacing: np.ndarray | None, ndim: int) -> tuple[float, ...] | None:
    """Validate a stored spacing: ``ndim`` positive finite numbers, or None if absent."""
    if spacing is None:
        return None
    if spacing.dtype.kind not in _INT_KINDS + _FLOAT_KINDS or spacing.shape != (ndim,):
        raise DataError(f"{path}: 'spacing' must be {ndim} numbers, got {spacing.dtype} {spacing.shape}")
    values = spacing.astype(np.float64)
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise DataError(f"{path}: 'spacing' {values.tolist()} must be positive and finite")
    return tuple(float(v) for v in values)


def load_case(path: str | os.PathLike[str]) -> Case:
    """Read and validate one challenge input file (see the module docstring).

    A 2D file's ``spacing``, if any, is ignored (2D cases are scored in pixels).
    """
    path = Path(path)
    is_3d = _dimensionality(path)
    arrays = _read_npz(path, ("imgs", "boxes"), ("spacing",))
    image = _check_image(path, arrays["imgs"], is_3d)
    boxes = _check_boxes(path, arrays["boxes"], image, is_3d)
    spacing = _check_spacing(path, arrays.get("spacing"), 3) if is_3d else None
    return Case(path.name, path, is_3d, image, boxes, spacing)


def check_label_shape(labels: np.ndarray, case: Case, *, source: str = "labels") -> None:
    """Raise DataError unless ``labels`` has ``case``'s spatial shape ((H,W) or (D,H,W))."""
    if tuple(labels.shape) != case.spatial_shape:
        raise DataError(
            f"{source}: shape {tuple(labels.shape)} does not match the image of {case.name} {case.spatial_shape}"
        )


def load_ground_truth(
    path: str | os.PathLike[str], case: Case | None = None
) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Read ``gts`` (integer labels, (H,W) or (D,H,W)) and the 3D ``spacing`` (or None).

    With ``case``, also check the shape against the case's image and that both
    spacings agree when both are present.
    """
    path = Path(path)
    is_3d = _dimensionality(path)
    arrays = _read_npz(path, ("gts",), ("spacing",))
    gts = arrays["gts"]
    if gts.dtype.kind not in _INT_KINDS:
        raise DataError(f"{path}: 'gts' has dtype {gts.dtype}, expected an integer label map")
    want = 3 if is_3d else 2
    if gts.ndim != want:
        raise DataError(f"{path}: 'gts' has shape {gts.shape}, expected {want} dimensions")
    _check_nonempty(path, "gts", gts)
    if gts.dtype.kind == "i" and gts.min() < 0:
        raise DataError(f"{path}: 'gts' holds negative labels")
    spacing = _check_spacing(path, arrays.get("spacing"), 3) if is_3d else None
    if case is not None:
        check_label_shape(gts, case, source=str(path))
        if spacing and case.spacing and not np.allclose(spacing, case.spacing, rtol=1e-5):
            raise DataError(f"{path}: spacing {spacing} differs from {case.name}'s {case.spacing}")
    return gts, spacing


def data_dirs(data: str | os.PathLike[str], gts: str | os.PathLike[str] | None = None) -> tuple[Path, Path | None]:
    """(inputs dir, ground-truth dir or None) of a ``--data`` argument: a challenge root holding
    ``imgs/`` (and ``gts/``), an ``imgs/`` dir with ``gts/`` beside it, or a dir of inputs.
    An explicit ``gts`` wins."""
    data = Path(data)
    if (data / "imgs").is_dir():
        inputs, beside = data / "imgs", data / "gts"
    elif data.name == "imgs":
        inputs, beside = data, data.parent / "gts"
    else:
        inputs, beside = data, None
    if gts is not None:
        return inputs, Path(gts)
    return inputs, beside if beside is not None and beside.is_dir() else None


def list_cases(directory: str | os.PathLike[str]) -> list[Path]:
    """The ``*.npz`` files of ``directory``, sorted by name."""
    directory = Path(directory)
    if not directory.exists():
        raise DataError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    files = sorted(p for p in directory.glob("*.npz") if p.is_file())
    if not files:
        raise DataError(f"{directory}: no .npz files")
    return files


# --------------------------------------------------------------------------- writing


def _as_label_map(path: Path, segs: np.ndarray) -> np.ndarray:
    segs = np.asarray(segs)
    if segs.dtype.kind not in "biu":
        raise DataError(f"{path}: segmentation has dtype {segs.dtype}, expected integer labels")
    if segs.ndim not in (2, 3):
        raise DataError(f"{path}: segmentation has shape {segs.shape}, expected 2 or 3 dims")
    if segs.size and (segs.min() < 0 or segs.max() > np.iinfo(np.uint16).max):
        raise DataError(f"{path}: segmentation labels must lie in 0..65535")
    return segs.astype(np.uint16)


def save_segmentation(path: str | os.PathLike[str], segs: np.ndarray, spacing: Sequence[float] | None = None) -> None:
    """Write ``segs`` ((H,W) or (D,H,W) labels, stored as uint16) and optional spacing.

    Atomic (``files.atomic_file``): an existing ``path`` is replaced only by a complete file.
    """
    path = Path(path)
    arrays = {"segs": _as_label_map(path, segs)}
    if spacing is not None:
        values = np.asarray(spacing, dtype=np.float64)
        arrays["spacing"] = values
        _check_spacing(path, values, values.size)
    try:
        with atomic_file(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    except MsamError as exc:
        raise DataError(str(exc)) from None
