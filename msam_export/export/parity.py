"""Parity of an exported graph against the PyTorch model on fixed inputs."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifact import ENCODER_INPUT
from ..contract import PromptArrays, preprocess, prompt_arrays, transform_boxes
from ..data import SAMPLES, Case, load_case
from ..metrics import agreement_dice
from ..runtime import Backend
from ..runtime.torch_backend import TorchBackend
from ..zoo import MedSam, ModelSpec

# cases bundled with the package that every parity check also runs on (real images)
PARITY_CASES = ("2DBox_US_HC18-000.npz", "3DBox_CT_MSDSpleen-spleen2.npz")
MAX_BOXES = 8
# golden boxes of shared/golden (512 frame), scaled to each model's frame
SYNTHETIC_BOXES_512 = ((96.0, 128.0, 300.0, 360.0), (256.0, 40.0, 480.0, 200.0))


@dataclass(frozen=True)
class ParityInput:
    """One preprocessed image (1,3,S,S) float32 with its (N,4) S-frame boxes."""

    name: str
    image: np.ndarray
    boxes: np.ndarray


def synthetic_image(size: int) -> np.ndarray:
    """A smooth RGB image of Gaussian blobs on gradients, min 0 and max 1: (1,3,S,S) float32.

    Same construction as the golden image of shared/golden/make_weights.py, so
    golden weights see the input their reference outputs were made with.
    """
    blobs = (
        (0.30, 0.45, 0.10, (1.00, 0.60, 0.30)),
        (0.72, 0.22, 0.07, (0.20, 0.90, 0.50)),
        (0.55, 0.75, 0.15, (0.50, 0.30, 1.00)),
        (0.15, 0.85, 0.05, (-0.40, 0.20, 0.60)),
        (0.85, 0.65, 0.12, (0.70, -0.30, 0.20)),
    )
    gradient = ((0.60, 0.20), (0.20, 0.60), (0.40, -0.30))
    t = (np.arange(size, dtype=np.float64) + 0.5) / size
    yy, xx = np.meshgrid(t, t, indexing="ij")
    img = np.zeros((3, size, size))
    for c, (a, b) in enumerate(gradient):
        img[c] = a * xx + b * yy
        for cx, cy, s, amps in blobs:
            img[c] += amps[c] * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * s * s))
    img = (img - img.min()) / (img.max() - img.min())
    return img.astype(np.float32)[None]


def sample_path(name: str) -> Path:
    """Path of a bundled sample input case."""
    return SAMPLES / "imgs" / name


def _parity_slice(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """The image a case is checked on (3D: the first box's middle slice) and its (k,4) boxes."""
    boxes = case.boxes[:MAX_BOXES]
    if not case.is_3d:
        return case.image, boxes
    z = int((boxes[0, 2] + boxes[0, 5]) // 2)
    return case.image[z], boxes[(boxes[:, 2] <= z) & (boxes[:, 5] >= z)][:, [0, 1, 3, 4]]


def _case_input(spec: ModelSpec, path: Path) -> ParityInput:
    image, boxes = _parity_slice(load_case(path))
    tensor, _ = preprocess(image, spec.input_size, spec.resize)
    return ParityInput(path.stem, tensor, transform_boxes(boxes, image.shape[:2], spec.input_size))


def parity_inputs(spec: ModelSpec, cases: tuple[str, ...] = PARITY_CASES) -> list[ParityInput]:
    """The synthetic image plus the bundled real cases, preprocessed for ``spec``."""
    scale = spec.input_size / 512
    synthetic = ParityInput(
        "synthetic", synthetic_image(spec.input_size), (np.array(SYNTHETIC_BOXES_512) * scale).astype(np.float32)
    )
    return [synthetic] + [_case_input(spec, sample_path(name)) for name in cases]


def _mask_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([agreement_dice(x > 0, y > 0) for x, y in zip(a[:, 0], b[:, 0], strict=True)]))


def exact_reference(model: MedSam) -> TorchBackend:
    """The PyTorch model evaluated in float64 (on a copy): the parity reference.

    Two float32 implementations of the same graph differ by their own rounding
    (about 5e-5 each on logits of magnitude 30 with LiteMedSAM's real weights),
    so an artifact's error is measured against the exact function instead.
    """
    return TorchBackend(copy.deepcopy(model), dtype=torch.float64)


class MemoBackend:
    """A backend whose results are remembered by input bytes: the float64 reference is slow
    and the same inputs are checked for every artifact of a checkpoint in one process."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = backend.name
        self.precision = backend.precision
        self.interface = backend.interface
        self._memo: dict[tuple, Any] = {}

    def _key(self, *arrays: np.ndarray) -> tuple:
        return tuple(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() + str(a.shape) for a in arrays)

    def encode(self, image: np.ndarray) -> np.ndarray:
        key = ("encode", *self._key(image))
        if key not in self._memo:
            self._memo[key] = self.backend.encode(image)
        return self._memo[key].copy()

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = ("decode", *self._key(embeddings, boxes))
        if key not in self._memo:
            self._memo[key] = self.backend.decode(embeddings, boxes)
        return tuple(a.copy() for a in self._memo[key])

    def decode_prompts(self, embeddings: np.ndarray, prompts: PromptArrays) -> tuple[np.ndarray, np.ndarray]:
        key = ("decode_prompts", *self._key(embeddings, *prompts.arrays()))
        if key not in self._memo:
            self._memo[key] = self.backend.decode_prompts(embeddings, prompts)
        return tuple(a.copy() for a in self._memo[key])


_REFERENCES: dict[str, MemoBackend] = {}


def cached_exact_reference(model: MedSam, sha256: str) -> MemoBackend:
    """``exact_reference`` of the checkpoint with this sha256, shared within the process."""
    if sha256 not in _REFERENCES:
        _REFERENCES.clear()  # one checkpoint at a time: keeps memory bounded
        _REFERENCES[sha256] = MemoBackend(exact_reference(model))
    return _REFERENCES[sha256]


def compare(reference: Backend, candidate: Backend, inputs: list[ParityInput], with_decoder: bool) -> dict[str, Any]:
    """Max abs errors (embeddings; logits and IoU given the reference embedding) and
    end-to-end mask agreement DSC, per input and worst over inputs."""
    per_input = []
    for item in inputs:
        ref_emb = reference.encode(item.image)
        cand_emb = candidate.encode(item.image)
        row: dict[str, Any] = {"input": item.name, "embeddings_max_abs": float(np.abs(ref_emb - cand_emb).max())}
        if with_decoder:
            ref_logits, ref_iou = reference.decode(ref_emb, item.boxes)
            logits, iou = candidate.decode(ref_emb.astype(np.float32), item.boxes)
            e2e_logits, _ = candidate.decode(cand_emb, item.boxes)
            row |= {
                "boxes": len(item.boxes),
                "logits_max_abs": float(np.abs(ref_logits - logits).max()),
                "iou_max_abs": float(np.abs(ref_iou - iou).max()),
                "mask_dsc": _mask_agreement(ref_logits, e2e_logits),
            }
        per_input.append(row)
    worst = {"embeddings_max_abs": max(r["embeddings_max_abs"] for r in per_input)}
    if with_decoder:
        worst |= {
            "logits_max_abs": max(r["logits_max_abs"] for r in per_input),
            "iou_max_abs": max(r["iou_max_abs"] for r in per_input),
            "mask_dsc_min": min(r["mask_dsc"] for r in per_input),
        }
    return {"inputs": per_input, "worst": worst}


def merge_worst(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """The worse of two ``worst`` summaries, key by key (``*_min``: the lower; else the higher)."""
    keys = list(a) + [k for k in b if k not in a]
    pick = {k: (min if k.endswith("_min") else max) for k in keys}
    return {k: pick[k](v for v in (a.get(k), b.get(k)) if v is not None) for k in keys}


@dataclass(frozen=True)
class PromptInput:
    """One image with full-interface prompts; ``previous_mask`` feeds the reference's box logits
    as ``mask_input`` (on every other row, the others flagged "no mask")."""

    name: str
    image: np.ndarray
    boxes: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    with_box: bool
    previous_mask: bool


PROMPT_SETS = {"clicks": (False, False), "box+clicks": (True, False), "clicks+mask": (False, True)}


def prompt_parity_inputs(spec: ModelSpec, cases: tuple[str, ...] = PARITY_CASES) -> list[PromptInput]:
    """``parity_inputs``' images with clicks derived from their boxes (a foreground click at the
    box centre, a background click at a quarter of its diagonal, one outside it), three ways:
    clicks only, box + clicks, clicks + previous mask."""
    out = []
    for item in parity_inputs(spec, cases):
        b = item.boxes.astype(np.float64)
        centre = (b[:, :2] + b[:, 2:]) / 2
        quarter = b[:, :2] + (b[:, 2:] - b[:, :2]) / 4
        outside = np.clip(b[:, :2] - 6, 0, spec.input_size - 1)
        points = np.stack([centre, quarter, outside], axis=1).astype(np.float32)
        labels = np.tile(np.array([1.0, 0.0, 0.0], dtype=np.float32), (len(b), 1))
        for kind, (with_box, previous_mask) in PROMPT_SETS.items():
            name = f"{item.name} {kind}"
            out.append(PromptInput(name, item.image, item.boxes, points, labels, with_box, previous_mask))
    return out


def compare_prompts(reference: Backend, candidate: Backend, inputs: list[PromptInput]) -> dict[str, Any]:
    """``compare`` for the full prompt interface: logits and IoU max abs errors given the reference
    embedding, end-to-end mask agreement, per input and worst."""
    rows, embeddings = [], {}
    for item in inputs:
        key = id(item.image)
        if key not in embeddings:
            embeddings[key] = (reference.encode(item.image), candidate.encode(item.image))
        ref_emb, cand_emb = embeddings[key]
        masks = None
        if item.previous_mask:
            masks = reference.decode(ref_emb, item.boxes)[0].astype(np.float32)
            masks[1::2] = np.nan  # every other row without a mask
        prompts = prompt_arrays(item.boxes if item.with_box else None, item.points, item.labels, masks)
        ref_logits, ref_iou = reference.decode_prompts(ref_emb, prompts)
        logits, iou = candidate.decode_prompts(ref_emb.astype(np.float32), prompts)
        e2e_logits, _ = candidate.decode_prompts(cand_emb, prompts)
        rows.append(
            {
                "input": item.name,
                "prompts": len(prompts),
                "points": int(prompts.point_labels.shape[1]),
                "logits_max_abs": float(np.abs(ref_logits - logits).max()),
                "iou_max_abs": float(np.abs(ref_iou - iou).max()),
                "mask_dsc": _mask_agreement(ref_logits, e2e_logits),
            }
        )
    worst = {
        "logits_max_abs": max(r["logits_max_abs"] for r in rows),
        "iou_max_abs": max(r["iou_max_abs"] for r in rows),
        "mask_dsc_min": min(r["mask_dsc"] for r in rows),
    }
    return {"inputs": rows, "worst": worst}


def raw_case_image(name: str) -> np.ndarray:
    """A bundled case's raw uint8 (H,W,3) image (3D: the first box's middle slice)."""
    image, _ = _parity_slice(load_case(sample_path(name)))
    return image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)


def preprocess_parity(graph: Path, reference: Backend, spec: ModelSpec, cases: tuple[str, ...]) -> dict[str, Any]:
    """The uint8-input encoder graph (ONNX Runtime) against Python preprocessing + the
    reference encoder: resized size equal, embeddings max abs error."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    rows = []
    for name in cases:
        image = raw_case_image(name)
        embedding, resized, original = session.run(None, {ENCODER_INPUT: image})
        tensor, resized_hw = preprocess(image, spec.input_size, spec.resize)
        rows.append(
            {
                "input": Path(name).stem,
                "resized_size_equal": tuple(int(v) for v in resized) == tuple(resized_hw),
                "original_size_equal": tuple(int(v) for v in original) == image.shape[:2],
                "embeddings_max_abs": float(np.abs(reference.encode(tensor) - embedding).max()),
            }
        )
    worst = {"embeddings_max_abs": max(r["embeddings_max_abs"] for r in rows)}
    sizes_ok = all(r["resized_size_equal"] and r["original_size_equal"] for r in rows)
    return {"inputs": rows, "worst": worst, "sizes_equal": sizes_ok}


@dataclass(frozen=True)
class Tolerance:
    """What a parity result must meet; None skips a criterion."""

    max_abs: float | None = 1e-4
    min_mask_dsc: float | None = None

    def failures(self, worst: dict[str, float]) -> list[str]:
        out = []
        if self.max_abs is not None:
            for key in ("embeddings_max_abs", "logits_max_abs"):
                if key in worst and not worst[key] <= self.max_abs:
                    out.append(f"{key} {worst[key]:.2e} > {self.max_abs:.0e}")
        if self.min_mask_dsc is not None and "mask_dsc_min" in worst and not worst["mask_dsc_min"] >= self.min_mask_dsc:
            out.append(f"mask agreement DSC {worst['mask_dsc_min']:.4f} < {self.min_mask_dsc}")
        return out

    def to_dict(self) -> dict[str, float | None]:
        return {"max_abs": self.max_abs, "min_mask_dsc": self.min_mask_dsc}


FP32 = Tolerance(max_abs=1e-4)
FP16 = Tolerance(max_abs=None, min_mask_dsc=0.98)
