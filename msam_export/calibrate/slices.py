"""Picking, preprocessing and storing calibration slices.

Cases are split by whole case, stratified by modality (the second token of the file name),
into a training part (the slices NNCF calibrates on) and a validation part (what accuracy
control measures), so that the validation metric predicts cases the artifact never saw.

* Training slices are drawn round robin over modalities, and within a modality over its
  cases; 3D slices only within the z range of at least one box. A modality short of
  ``min_per_modality`` slices (a 2D modality has one slice per case) is topped up with
  flipped copies of its images (a flip keeps the intensity statistics that calibration
  ranges depend on); one still short is reported.
* Validation keeps every validation case: a 2D case as its slice, a 3D case as a window of
  up to ``WINDOW`` consecutive slices around its first box's middle, with the boxes clipped
  to the window, so that the metric can propagate through it as ``segment`` does.
* A slice keeps at most ``MAX_BOXES`` boxes, spread evenly over the range of box areas
  (``spread_by_area``): a microscopy image of a hundred nuclei is scored on its small objects
  as well as its large ones, as ``verify`` scores every box.

The file keeps the encoder inputs, the boxes per slice (S frame), the PyTorch FP32 image
embeddings of the validation slices and the raw windows (schema ``msam-export/calib@2``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import preprocess, transform_boxes
from ..data import Case, data_dirs, list_cases, load_case
from ..errors import MsamError
from ..files import PathLike, atomic_file
from ..zoo import ModelSpec, get_spec

SCHEMA = "msam-export/calib@2"
MAX_BOXES = 16  # boxes kept per slice
WINDOW_BOXES = 8  # boxes propagated through a validation window
WINDOW = 12
FLIPS = (1, 2, 3)  # left-right, up-down, both


@dataclass(frozen=True)
class Slice:
    """One slice: a case, a z index (None for 2D), its modality and a flip (0: none)."""

    case: str
    z: int | None
    modality: str
    flip: int = 0


def _candidate_slices(case: Case) -> list[Slice]:
    if not case.is_3d:
        return [Slice(case.name, None, case.modality)]
    zs = set()
    for box in case.boxes:
        zs |= set(range(int(box[2]), int(box[5]) + 1))
    return [Slice(case.name, z, case.modality) for z in sorted(zs)]


def split_cases(
    cases: list[Case], val_fraction: float, val_cases: list[str] | None = None
) -> tuple[list[Case], list[Case], list[str]]:
    """(training cases, validation cases, warnings): ``val_cases`` by name, or per modality
    ``round(val_fraction * n)`` cases (at least one, never all; every other case of the
    sorted list, so both parts span the modality)."""
    if val_cases is not None:
        names = {c.name for c in cases}
        unknown = sorted(set(val_cases) - names)
        if unknown:
            raise MsamError(f"--val-cases: no case {', '.join(unknown)} in the data")
        held = [c for c in cases if c.name in set(val_cases)]
        return [c for c in cases if c.name not in set(val_cases)], held, []
    by_modality: dict[str, list[Case]] = defaultdict(list)
    for case in sorted(cases, key=lambda c: c.name):
        by_modality[case.modality].append(case)
    train, held, warnings = [], [], []
    for modality, group in sorted(by_modality.items()):
        k = min(max(1, round(val_fraction * len(group))), len(group) - 1) if val_fraction > 0 else 0
        if val_fraction > 0 and len(group) == 1:
            warnings.append(f"{modality} has one case ({group[0].name}): used for calibration, not validated")
        for i, case in enumerate(group):
            (held if i in _spread(len(group), k) else train).append(case)
    if val_fraction > 0 and not held and len(cases) > 1:
        # every modality has a single case: hold out whole cases across modalities instead
        ordered = sorted(cases, key=lambda c: c.name)
        picked = _spread(len(ordered), min(max(1, round(val_fraction * len(ordered))), len(ordered) - 1))
        held = [c for i, c in enumerate(ordered) if i in picked]
        train = [c for i, c in enumerate(ordered) if i not in picked]
        names = ", ".join(c.modality for c in held)
        warnings.append(f"one case per modality: validating on whole cases of {names}, which calibration does not see")
    return train, held, warnings


def _spread(n: int, k: int) -> set[int]:
    """``k`` of ``n`` sorted positions, evenly spread."""
    step = n / k if k else 0
    return {int(i * step + step / 2) for i in range(k)}


def select_slices(cases: list[Case], n: int, seed: int = 0, min_per_modality: int = 0) -> list[Slice]:
    """``n`` slices spread evenly over modalities (round robin), and within a modality over its
    cases; then every modality topped up to ``min_per_modality`` with flipped copies where it
    ran out of slices. Deterministic for a seed."""
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
    counts: dict[str, int] = defaultdict(int)
    for item in picked:
        counts[item.modality] += 1
    for modality in sorted(by_modality):
        originals = [s for s in picked if s.modality == modality]
        copies = [Slice(s.case, s.z, s.modality, flip) for flip in FLIPS for s in originals]
        while counts[modality] < min_per_modality and copies:
            picked.append(copies.pop(0))
            counts[modality] += 1
    return picked


@dataclass
class CalibrationSet:
    """Arrays of a calibration file (N slices, W windows).

    images: float32 (N,3,S,S) encoder inputs; boxes: float32 (N,K,4) S-frame boxes with
    ``box_counts`` (N,) valid rows; validation: bool (N,); val_embeddings: float32
    (V,256,64,64) PyTorch FP32 embeddings of the validation slices; sources ("case:z"),
    modalities and cases per slice; windows: (case name, uint8 (w,H,W) volume, (m,6) boxes)
    of the validation 3D cases.
    """

    model: str
    images: np.ndarray
    boxes: np.ndarray
    box_counts: np.ndarray
    validation: np.ndarray
    val_embeddings: np.ndarray
    sources: np.ndarray
    modalities: np.ndarray
    cases: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    windows: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)

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


def _flip(image: np.ndarray, flip: int) -> np.ndarray:
    if flip & 1:
        image = image[:, ::-1]
    if flip & 2:
        image = image[::-1]
    return np.ascontiguousarray(image)


def spread_by_area(boxes: np.ndarray, k: int = MAX_BOXES) -> np.ndarray:
    """At most ``k`` of ``boxes`` (N, 4) XYXY: all when N <= k, else the boxes at evenly spaced
    ranks of box area, smallest and largest included, in their original order."""
    if len(boxes) <= k:
        return boxes
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    by_area = np.argsort(area, kind="stable")
    ranks = np.unique(np.linspace(0, len(boxes) - 1, k).round().astype(int))
    return boxes[np.sort(by_area[ranks])]


def _slice_input(case: Case, z: int | None, spec: ModelSpec, flip: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(encoder input (3,S,S), padded S-frame boxes (K,4), box count) of one slice."""
    if z is None:
        image, boxes = case.image, case.boxes
    else:
        image = case.image[z]
        active = case.boxes[(case.boxes[:, 2] <= z) & (case.boxes[:, 5] >= z)]
        boxes = active[:, [0, 1, 3, 4]]
    tensor, (height, width) = preprocess(_flip(image, flip), spec.input_size, spec.resize)
    chosen = spread_by_area(np.asarray(boxes, dtype=np.float64))
    model_boxes = transform_boxes(chosen, image.shape[:2], spec.input_size)
    if flip & 1:
        model_boxes[:, [0, 2]] = width - model_boxes[:, [2, 0]]
    if flip & 2:
        model_boxes[:, [1, 3]] = height - model_boxes[:, [3, 1]]
    padded = np.zeros((MAX_BOXES, 4), np.float32)
    padded[: len(model_boxes)] = model_boxes
    return tensor[0], padded, len(model_boxes)


def validation_window(case: Case, size: int = WINDOW) -> tuple[np.ndarray, np.ndarray, range]:
    """(volume (w,H,W), boxes clipped to it (m,6) with z relative to it, the window's slices) of a
    3D case: up to ``size`` consecutive slices centred on its first box's middle slice, and of
    the boxes that reach into it the ``WINDOW_BOXES`` that cover most of its slices."""
    first = case.boxes[0]
    middle = int((first[2] + first[5]) // 2)
    lo = max(0, min(middle - size // 2, case.image.shape[0] - size))
    window = range(lo, min(case.image.shape[0], lo + size))
    boxes = []
    for box in case.boxes:
        z0, z1 = max(int(box[2]), window.start), min(int(box[5]), window.stop - 1)
        if z0 <= z1:
            boxes.append([box[0], box[1], z0 - window.start, box[3], box[4], z1 - window.start])
    boxes.sort(key=lambda b: b[2] - b[5])  # stable: most slices first, then file order
    return case.image[window.start : window.stop], np.asarray(boxes[:WINDOW_BOXES], dtype=np.float64), window


def build_calibration(
    paths: list[Path],
    encode: Callable[[np.ndarray], np.ndarray],
    spec: ModelSpec,
    n: int = 300,
    seed: int = 0,
    val_fraction: float = 0.2,
    val_cases: list[str] | None = None,
    min_per_modality: int = 8,
) -> tuple[CalibrationSet, dict[str, dict[str, int]], list[str]]:
    """Splits the cases, selects and preprocesses slices; ``encode`` maps (V,3,S,S) inputs to
    their FP32 embeddings (V,256,64,64) (the PyTorch reference). Returns the set, counts per modality (train and
    validation slices, validation cases) and warnings."""
    all_cases = [load_case(p) for p in paths]
    train_cases, held, warnings = split_cases(all_cases, val_fraction, val_cases)
    if not train_cases:
        raise MsamError("no calibration cases left after holding out the validation cases")
    train = select_slices(train_cases, n, seed, min_per_modality)
    by_name = {c.name: c for c in all_cases}
    items: list[tuple[Slice, bool]] = [(s, False) for s in train]
    windows = []
    for case in held:
        if case.is_3d:
            volume, boxes, window = validation_window(case)
            windows.append((case.name, volume, boxes))
            items += [(Slice(case.name, z, case.modality), True) for z in window if _active(case, z)]
        else:
            items.append((Slice(case.name, None, case.modality), True))
    inputs = [_slice_input(by_name[s.case], s.z, spec, s.flip) for s, _ in items]
    images = np.stack([i[0] for i in inputs])
    validation = np.array([v for _, v in items], bool)
    val_images = images[validation]
    val_embeddings = encode(val_images) if len(val_images) else np.zeros((0, 256, 64, 64), np.float32)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"train": 0, "validation": 0, "validation_cases": 0})
    for s, is_val in items:
        counts[s.modality]["validation" if is_val else "train"] += 1
    for case in held:
        counts[case.modality]["validation_cases"] += 1
    for modality, c in sorted(counts.items()):
        if c["train"] < min_per_modality:
            warnings.append(f"{modality}: {c['train']} calibration slices (< {min_per_modality}); add cases of it")
    calib = CalibrationSet(
        model=spec.name,
        images=images,
        boxes=np.stack([i[1] for i in inputs]),
        box_counts=np.array([i[2] for i in inputs], np.int64),
        validation=validation,
        val_embeddings=np.asarray(val_embeddings, dtype=np.float32),
        sources=np.array(
            [f"{s.case}:{'' if s.z is None else s.z}{f':flip{s.flip}' if s.flip else ''}" for s, _ in items]
        ),
        modalities=np.array([s.modality for s, _ in items]),
        cases=np.array([s.case for s, _ in items]),
        windows=windows,
    )
    return calib, {k: dict(v) for k, v in counts.items()}, warnings


def _active(case: Case, z: int) -> bool:
    return bool(((case.boxes[:, 2] <= z) & (case.boxes[:, 5] >= z)).any())


_ARRAYS = ("images", "boxes", "box_counts", "validation", "val_embeddings", "sources", "modalities", "cases")


def save_calibration(path: PathLike, calib: CalibrationSet) -> None:
    """Writes the npz atomically."""
    arrays = {k: np.asarray(getattr(calib, k)) for k in _ARRAYS}
    for i, (_, volume, boxes) in enumerate(calib.windows):
        arrays |= {f"window_{i}_volume": volume, f"window_{i}_boxes": boxes}
    names = np.array([w[0] for w in calib.windows], dtype=str)
    with atomic_file(path, "wb") as f:
        np.savez_compressed(f, schema=np.array(SCHEMA), model=np.array(calib.model), window_names=names, **arrays)


def load_calibration(path: PathLike, spec: ModelSpec | None = None) -> CalibrationSet:
    """Reads a calibration file; checks schema and (optionally) that it fits ``spec``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise MsamError(f"{path}: not a calibration file ({exc})") from None
    if str(arrays.get("schema", "")) != SCHEMA:
        raise MsamError(f"{path}: not an msam-export calibration file (schema {SCHEMA}); rerun msam-export calibrate")
    try:
        windows = [
            (str(name), arrays[f"window_{i}_volume"], arrays[f"window_{i}_boxes"])
            for i, name in enumerate(arrays["window_names"])
        ]
        calib = CalibrationSet(model=str(arrays["model"]), windows=windows, **{k: arrays[k] for k in _ARRAYS})
    except KeyError as exc:
        raise MsamError(f"{path}: calibration file lacks {exc}") from None
    if spec is not None and (calib.model not in _names() or get_spec(calib.model).input_size != spec.input_size):
        raise MsamError(f"{path} was made for {calib.model}, not {spec.name}; rerun msam-export calibrate")
    return calib


def _names() -> set[str]:
    from ..zoo import ZOO

    return set(ZOO)


@dataclass
class Calibration:
    """What ``calibrate`` wrote: the file, its arrays, counts per modality and warnings."""

    path: Path
    calib: CalibrationSet
    counts: dict[str, dict[str, int]]
    warnings: list[str]


def calibrate(
    data: PathLike,
    output: PathLike,
    *,
    model: PathLike,
    n: int = 300,
    seed: int = 0,
    val_fraction: float = 0.2,
    val_cases: list[str] | None = None,
    min_per_modality: int = 8,
    variant: str | None = None,
    trust_pickle: bool = False,
    cluster: Any = None,
) -> Calibration:
    """Picks ``n`` training slices of the challenge cases in ``data`` (stratified by modality,
    validation held out by whole case), preprocessed for the checkpoint ``model``, with its
    FP32 embeddings of the validation slices, and writes them to ``output`` (.npz).
    ``cluster`` (``msam_export.cluster``) computes those embeddings on a Ray cluster."""
    import torch

    from ..checkpoints import load_checkpoint

    if n < 1 or not 0 <= val_fraction < 1:
        raise MsamError("n must be >= 1 and val_fraction in [0, 1)")
    loaded = load_checkpoint(model, variant=variant, trust_pickle=trust_pickle)

    @torch.no_grad()
    def encode(images: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [loaded.model.encode(torch.from_numpy(images[i : i + 1])).numpy() for i in range(len(images))]
        )

    paths = list_cases(data_dirs(data)[0])
    if cluster is not None:
        encode = cluster.encoder(Path(model), variant=variant, trust_pickle=trust_pickle)
    calib, counts, warnings = build_calibration(
        paths, encode, loaded.spec, n, seed, val_fraction, val_cases, min_per_modality
    )
    save_calibration(output, calib)
    return Calibration(Path(output), calib, counts, warnings)
