"""Picking, preprocessing and storing calibration slices.

Slices are drawn from 2D and 3D challenge cases, stratified by modality (the
second token of the file name), 3D slices only within the z range of at least
one box. Each slice is preprocessed with the model's spec; the file keeps the
encoder inputs, the boxes active on the slice (S frame) and the PyTorch FP32
image embeddings of a held-out validation split, so that quantization can be
validated without rerunning the reference encoder.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract import preprocess, transform_boxes
from ..data import Case, load_case
from ..errors import MsamError
from ..files import atomic_file
from ..zoo import MedSam, ModelSpec, get_spec

SCHEMA = "msam-export/calib@1"
MAX_BOXES = 8


@dataclass(frozen=True)
class Slice:
    """One calibration slice: a case, a z index (None for 2D) and its modality."""

    case: str
    z: int | None
    modality: str


def _candidate_slices(case: Case) -> list[Slice]:
    if not case.is_3d:
        return [Slice(case.name, None, case.modality)]
    zs = set()
    for box in case.boxes:
        zs |= set(range(int(box[2]), int(box[5]) + 1))
    return [Slice(case.name, z, case.modality) for z in sorted(zs)]


def select_slices(cases: list[Case], n: int, seed: int = 0) -> list[Slice]:
    """``n`` slices spread evenly over modalities (round robin), and within a
    modality over its cases; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    by_modality: dict[str, list[list[Slice]]] = defaultdict(list)
    for case in sorted(cases, key=lambda c: c.name):
        candidates = _candidate_slices(case)
        rng.shuffle(candidates)
        by_modality[case.modality].append(candidates)
    picked: list[Slice] = []
    while len(picked) < n and any(any(c) for groups in by_modality.values() for c in groups):
        for modality in sorted(by_modality):
            groups = [g for g in by_modality[modality] if g]
            if not groups or len(picked) >= n:
                continue
            group = groups[int(rng.integers(len(groups)))]
            picked.append(group.pop())
    return picked


@dataclass
class CalibrationSet:
    """Arrays of a calibration file (N slices).

    images: float32 (N,3,S,S) encoder inputs; boxes: float32 (N,K,4) S-frame boxes
    with ``box_counts`` (N,) valid rows; validation: bool (N,); val_embeddings:
    float32 (V,256,64,64) PyTorch FP32 embeddings of the validation slices.
    """

    model: str
    images: np.ndarray
    boxes: np.ndarray
    box_counts: np.ndarray
    validation: np.ndarray
    val_embeddings: np.ndarray
    sources: np.ndarray
    modalities: np.ndarray

    @property
    def train_images(self) -> np.ndarray:
        return self.images[~self.validation]

    def val_items(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(image (1,3,S,S), boxes (k,4), reference embedding (1,256,64,64)) per validation slice."""
        idx = np.nonzero(self.validation)[0]
        return [
            (self.images[i : i + 1], self.boxes[i, : self.box_counts[i]], self.val_embeddings[j : j + 1])
            for j, i in enumerate(idx)
        ]


def _slice_input(case: Case, item: Slice, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    if item.z is None:
        image, boxes = case.image, case.boxes
    else:
        image = case.image[item.z]
        active = case.boxes[(case.boxes[:, 2] <= item.z) & (case.boxes[:, 5] >= item.z)]
        boxes = active[:, [0, 1, 3, 4]]
    tensor, _ = preprocess(image, spec.input_size, spec.resize)
    model_boxes = transform_boxes(np.asarray(boxes[:MAX_BOXES], dtype=np.float64), image.shape[:2], spec.input_size)
    padded = np.zeros((MAX_BOXES, 4), np.float32)
    padded[: len(model_boxes)] = model_boxes
    return tensor[0], padded, len(model_boxes)


def build_calibration(
    paths: list[Path],
    model: MedSam,
    spec: ModelSpec,
    n: int = 300,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> tuple[CalibrationSet, dict[str, int]]:
    """Selects and preprocesses slices; returns the set and the count per modality."""
    import torch

    cases = {p.name: load_case(p) for p in paths}
    slices = select_slices(list(cases.values()), n, seed)
    if not slices:
        raise MsamError("no calibration slices: the data holds no case with boxes")
    inputs = [_slice_input(cases[s.case], s, spec) for s in slices]
    images = np.stack([i[0] for i in inputs])
    rng = np.random.default_rng(seed + 1)
    n_val = max(1, round(len(slices) * val_fraction)) if len(slices) > 1 else 0
    validation = np.zeros(len(slices), bool)
    validation[rng.choice(len(slices), size=n_val, replace=False)] = True
    with torch.no_grad():
        val_embeddings = [model.encode(torch.from_numpy(images[i : i + 1])).numpy() for i in np.nonzero(validation)[0]]
    counts: dict[str, int] = defaultdict(int)
    for s in slices:
        counts[s.modality] += 1
    calib = CalibrationSet(
        model=spec.name,
        images=images,
        boxes=np.stack([i[1] for i in inputs]),
        box_counts=np.array([i[2] for i in inputs], np.int64),
        validation=validation,
        val_embeddings=np.concatenate(val_embeddings) if val_embeddings else np.zeros((0, 256, 64, 64), np.float32),
        sources=np.array([f"{s.case}:{'' if s.z is None else s.z}" for s in slices]),
        modalities=np.array([s.modality for s in slices]),
    )
    return calib, dict(counts)


def save_calibration(path: Path, calib: CalibrationSet) -> None:
    """Writes the npz atomically (temp file in the same directory, then rename)."""
    with atomic_file(path, "wb") as f:
        np.savez_compressed(f, schema=np.array(SCHEMA), **{k: np.asarray(v) for k, v in calib.__dict__.items()})


def load_calibration(path: Path, spec: ModelSpec | None = None) -> CalibrationSet:
    """Reads a calibration file; checks schema and (optionally) that it fits ``spec``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise MsamError(f"{path}: not a calibration file ({exc})") from None
    if str(arrays.pop("schema", "")) != SCHEMA:
        raise MsamError(f"{path}: not an msam-export calibration file (schema {SCHEMA} expected)")
    try:
        calib = CalibrationSet(**{k: arrays[k] for k in CalibrationSet.__dataclass_fields__})
    except KeyError as exc:
        raise MsamError(f"{path}: calibration file lacks {exc}") from None
    calib.model = str(calib.model)
    if spec is not None and get_spec(calib.model).input_size != spec.input_size:
        raise MsamError(f"{path} was made for {calib.model}, not {spec.name}; rerun msam-export calibrate")
    return calib
