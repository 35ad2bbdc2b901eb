"""The drift metric that quantization is controlled by.

Mean mask agreement DSC against FP32 on the calibration file's validation split.
The FP32 side is computed once: the file already holds the PyTorch FP32 image
embeddings of those slices, and the FP32 decoder turns them into reference masks
here, so each evaluation of a candidate costs one encoder call per slice plus the
(FP32) decoder. The embedding error (relative L2) comes for free and needs no
decoder; it is what layers are ranked by.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calibrate import CalibrationSet
from ..files import sha256_of
from ..metrics import agreement_dice

Encoder = Callable[[np.ndarray], np.ndarray]
Decoder = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Drift:
    """A candidate encoder against FP32 on the validation slices."""

    agreement: float  # mean over slices of the mean agreement DSC of their boxes
    per_slice: tuple[float, ...]
    embedding_error: float  # mean relative L2 error of the image embeddings
    per_modality: dict[str, float]

    def to_dict(self) -> dict:
        return {
            "agreement_dsc": round(self.agreement, 6),
            "embedding_rel_error": round(self.embedding_error, 6),
            "agreement_by_modality": {k: round(v, 6) for k, v in self.per_modality.items()},
            "slices": len(self.per_slice),
        }


class DriftMeter:
    """Scores candidate encoders against the cached FP32 outputs.

    ``decoder(embeddings (1,256,64,64), boxes (k,4)) -> logits (k,1,h,w)`` is the FP32
    decoder; masks are compared at its output resolution (logits > 0).
    """

    def __init__(self, calib: CalibrationSet, decoder: Decoder) -> None:
        self.items = calib.val_items()
        if not self.items:
            raise ValueError("the calibration file has no validation slices (--val-fraction 0)")
        self.modalities = [str(m) for m in calib.modalities[calib.validation]]
        self.decoder = decoder
        self.reference_masks = [decoder(emb, boxes) > 0 for _, boxes, emb in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def embedding_error(self, encoder: Encoder, subset: list[int] | None = None) -> float:
        """Mean relative L2 error of the embeddings on ``subset`` (default: all) slices."""
        errors = []
        for i in subset if subset is not None else range(len(self.items)):
            image, _, reference = self.items[i]
            errors.append(_relative_error(encoder(image), reference))
        return float(np.mean(errors))

    def measure(self, encoder: Encoder, decoder: Decoder | None = None) -> Drift:
        """Drift of ``encoder`` (and optionally a candidate ``decoder``; default the FP32 one)."""
        decoder = decoder or self.decoder
        agreements, errors = [], []
        for (image, boxes, reference), ref_masks in zip(self.items, self.reference_masks, strict=True):
            embeddings = encoder(image)
            errors.append(_relative_error(embeddings, reference))
            masks = decoder(embeddings, boxes) > 0
            pairs = zip(masks, ref_masks, strict=True)
            agreements.append(float(np.mean([agreement_dice(a[0], b[0]) for a, b in pairs])))
        by_modality: dict[str, list[float]] = {}
        for modality, value in zip(self.modalities, agreements, strict=True):
            by_modality.setdefault(modality, []).append(value)
        return Drift(
            agreement=float(np.mean(agreements)),
            per_slice=tuple(agreements),
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
    }


def _relative_error(candidate: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(candidate - reference) / max(float(np.linalg.norm(reference)), 1e-12))
