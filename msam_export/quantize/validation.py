"""The drift metric that quantization is controlled by.

Mask agreement DSC with FP32 on the calibration file's validation cases, cases the
calibration never drew from. A 2D case scores its slice; a 3D case is propagated through its
validation window exactly as ``segment`` propagates (the runtime's own predictor, the model's
own rule), so the error that compounds from slice to slice is in the metric. The limit applies
to the mean over cases, as verify's agreement does, and optionally to each modality's mean
(``Goal``). Per-slice agreement (each slice decoded
with its own boxes, as teacher forcing does) is reported next to it.

The FP32 side is computed once: the file holds the PyTorch FP32 embeddings of the validation
slices, and the FP32 decoder turns them into reference masks here. The embedding error
(relative L2) needs no decoder; it is what modules are ranked by.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calibrate import CalibrationSet
from ..errors import MsamError
from ..files import sha256_of
from ..metrics import agreement_dice
from ..runtime import Backend, Predictor
from ..zoo import ModelSpec


@dataclass(frozen=True)
class Drift:
    """A candidate against FP32 on the validation cases."""

    agreement: float  # mean over validation cases (3D: propagated through their window)
    slice_agreement: float  # mean over validation slices, each decoded with its own boxes
    per_slice: tuple[float, ...]
    per_case: dict[str, float]
    embedding_error: float  # mean relative L2 error of the image embeddings
    per_modality: dict[str, float]

    def to_dict(self) -> dict:
        return {
            "agreement_dsc": round(self.agreement, 6),
            "slice_agreement_dsc": round(self.slice_agreement, 6),
            "embedding_rel_error": round(self.embedding_error, 6),
            "agreement_by_modality": {k: round(v, 6) for k, v in self.per_modality.items()},
            "agreement_by_case": {k: round(v, 6) for k, v in self.per_case.items()},
            "cases": len(self.per_case),
            "slices": len(self.per_slice),
        }

    def weakest(self) -> tuple[str, float] | None:
        """The modality with the lowest mean agreement and that mean (None without modalities)."""
        return min(self.per_modality.items(), key=lambda item: item[1]) if self.per_modality else None


@dataclass(frozen=True)
class Goal:
    """What quantization must reach: a mean agreement of at least ``1 - max_drift`` and, when
    ``max_modality_drift`` is set, the same for each modality's mean on its own."""

    max_drift: float
    max_modality_drift: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.max_drift < 1:
            raise MsamError("--max-drift must be in [0, 1)")
        if self.max_modality_drift is not None and not 0 <= self.max_modality_drift < 1:
            raise MsamError("--max-modality-drift must be in [0, 1)")

    def shortfall(self, drift: Drift) -> float:
        """How far ``drift`` is from the goal, 0 when met: the mean's miss plus the weakest
        modality's, so that progress on either counts."""
        miss = max((1.0 - self.max_drift) - drift.agreement, 0.0)
        weakest = drift.weakest()
        if self.max_modality_drift is not None and weakest:
            miss += max((1.0 - self.max_modality_drift) - weakest[1], 0.0)
        return miss

    def met(self, drift: Drift) -> bool:
        """Whether ``drift`` meets every limit (a NaN agreement never does)."""
        return self.shortfall(drift) == 0.0

    def rank(self, drift: Drift) -> tuple[float, float]:
        """Sort key, larger is better: closer to the goal first, then higher mean agreement.
        Without a modality floor this orders as the mean agreement does."""
        return (-self.shortfall(drift), drift.agreement)

    def weakest_modality(self, drift: Drift) -> str | None:
        """The lowest modality when it is below the floor; None otherwise or without a floor."""
        weakest = drift.weakest()
        if self.max_modality_drift is None or not weakest:
            return None
        return weakest[0] if weakest[1] < 1.0 - self.max_modality_drift else None

    def describe(self, drift: Drift) -> str:
        """E.g. "agreement 0.9812 (target 0.9500), weakest modality Microscope 0.9600 (target 0.9700)";
        the second part only with a modality floor."""
        text = f"agreement {drift.agreement:.4f} (target {1.0 - self.max_drift:.4f})"
        weakest = drift.weakest()
        if self.max_modality_drift is not None and weakest:
            text += f", weakest modality {weakest[0]} {weakest[1]:.4f} (target {1.0 - self.max_modality_drift:.4f})"
        return text

    def to_dict(self) -> dict[str, float | None]:
        """The limits as ``export.json`` records them."""
        return {"max_drift": self.max_drift, "max_modality_drift": self.max_modality_drift}


def image_key(image: np.ndarray) -> str:
    """A slice's identity (sha256 of its float32 encoder input): embeddings are looked up by it."""
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()


class _Lookup:
    """A backend that encodes by looking the input up (embeddings already computed), falling back
    to ``encoder``, and decodes with ``decoder``."""

    def __init__(self, known: dict[str, np.ndarray], encoder: Backend | None, decoder: Backend) -> None:
        self.known, self.encoder, self.decoder = known, encoder, decoder
        self.name, self.precision = decoder.name, decoder.precision

    def encode(self, image: np.ndarray) -> np.ndarray:
        found = self.known.get(image_key(image))
        if found is None:
            if self.encoder is None:
                raise KeyError("a window slice is not among the validation slices")
            return self.encoder.encode(image)
        return found.copy()

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.decoder.decode(embeddings, boxes)


class DriftMeter:
    """Scores candidate encoders (and decoders) against the cached FP32 outputs.

    ``decoder`` is a backend running the FP32 decoder; masks of single slices are compared at
    its output resolution (low-res logits > 0), propagated windows at full resolution.
    """

    def __init__(self, calib: CalibrationSet, decoder: Backend, spec: ModelSpec) -> None:
        self.items = calib.val_items()
        if not self.items:
            raise ValueError("the calibration file has no validation slices (--val-fraction 0)")
        self.spec = spec
        self.modalities = [str(m) for m in calib.modalities[calib.validation]]
        names = calib.cases if len(calib.cases) else calib.sources
        self.cases = [str(c) for c in names[calib.validation]]
        self.windows = list(calib.windows)
        self.decoder = decoder
        self.reference_masks = [decoder.decode(emb, boxes)[0] > 0 for _, boxes, emb in self.items]
        reference = {image_key(image): emb for image, _, emb in self.items}
        self.reference_windows = [self._propagate(_Lookup(reference, None, decoder), w) for w in self.windows]

    def __len__(self) -> int:
        return len(self.items)

    def _propagate(self, backend: Backend, window: tuple[str, np.ndarray, np.ndarray]) -> list[np.ndarray]:
        _, volume, boxes = window
        return Predictor(backend, self.spec).segment_3d(volume, boxes).box_masks

    def embedding_error(self, encoder: Backend, subset: list[int] | None = None) -> float:
        """Mean relative L2 error of the embeddings on ``subset`` (default: all) slices."""
        errors = []
        for i in subset if subset is not None else range(len(self.items)):
            image, _, reference = self.items[i]
            errors.append(_relative_error(encoder.encode(image), reference))
        return float(np.mean(errors))

    def measure(self, encoder: Backend, decoder: Backend | None = None) -> Drift:
        """Drift of ``encoder`` (and optionally a candidate ``decoder``; default the FP32 one)."""
        decoder = decoder or self.decoder
        agreements, errors, embeddings = [], [], {}
        for (image, boxes, reference), ref_masks in zip(self.items, self.reference_masks, strict=True):
            emb = encoder.encode(image)
            embeddings[image_key(image)] = emb
            errors.append(_relative_error(emb, reference))
            masks = decoder.decode(emb, boxes)[0] > 0
            agreements.append(
                float(np.mean([agreement_dice(a[0], b[0]) for a, b in zip(masks, ref_masks, strict=True)]))
            )
        per_case: dict[str, list[float]] = {}
        modality_of: dict[str, str] = {}
        windowed = {w[0] for w in self.windows}
        for case, modality, value in zip(self.cases, self.modalities, agreements, strict=True):
            modality_of[case] = modality
            if case not in windowed:
                per_case.setdefault(case, []).append(value)
        candidate = _Lookup(embeddings, encoder, decoder)
        for window, reference in zip(self.windows, self.reference_windows, strict=True):
            masks = self._propagate(candidate, window)
            per_case[window[0]] = [
                float(np.mean([agreement_dice(a, b) for a, b in zip(masks, reference, strict=True)]))
            ]
        case_scores = {case: float(np.mean(v)) for case, v in sorted(per_case.items())}
        by_modality: dict[str, list[float]] = {}
        for case, value in case_scores.items():
            by_modality.setdefault(modality_of.get(case, ""), []).append(value)
        return Drift(
            agreement=float(np.mean(list(case_scores.values()))),
            slice_agreement=float(np.mean(agreements)),
            per_slice=tuple(agreements),
            per_case=case_scores,
            embedding_error=float(np.mean(errors)),
            per_modality={k: float(np.mean(v)) for k, v in sorted(by_modality.items())},
        )


def calibration_record(path: Path, calib: CalibrationSet) -> dict:
    """What export.json says of the calibration file a quantization used."""
    return {
        "file": str(path),
        "sha256": sha256_of(path),
        "train_slices": int((~calib.validation).sum()),
        "validation_slices": int(calib.validation.sum()),
        "validation_cases": sorted({str(c) for c in calib.cases[calib.validation]}),
        "validation_windows": len(calib.windows),
    }


def _relative_error(candidate: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(candidate - reference) / max(float(np.linalg.norm(reference)), 1e-12))
