"""The drift metric: mask agreement against cached FP32 outputs."""

from __future__ import annotations

import numpy as np
import pytest

from msam_export.calibrate import CalibrationSet
from msam_export.quantize.validation import DriftMeter
from msam_export.zoo import get_spec

SPEC = get_spec("litemedsam")


def _calib(n: int = 4) -> CalibrationSet:
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((n, 2, 8, 8)).astype(np.float32)
    return CalibrationSet(
        model="litemedsam",
        images=embeddings.copy(),  # the "encoder" below is the identity
        boxes=np.zeros((n, 8, 4), np.float32),
        box_counts=np.full(n, 2),
        validation=np.ones(n, bool),
        val_embeddings=embeddings,
        sources=np.array([f"c{i}:" for i in range(n)]),
        modalities=np.array(["CT", "CT", "MR", "MR"][:n]),
        cases=np.array(["a.npz", "b.npz", "c.npz", "c.npz"][:n]),
    )


class Fake:
    """A backend over toy tensors: ``encode`` is ``fn``; ``decode`` gives two "boxes" whose masks are
    the sign patterns of the embedding's two channels."""

    name, precision = "fake", "f32"

    def __init__(self, fn=lambda image: image) -> None:
        self.fn = fn

    def encode(self, image: np.ndarray) -> np.ndarray:
        return self.fn(image)

    def decode(self, embeddings: np.ndarray, boxes: np.ndarray):
        return np.stack([embeddings[0, :1], embeddings[0, 1:2]]), np.zeros((2, 1), np.float32)


def test_identical_encoder_agrees_fully():
    meter = DriftMeter(_calib(), Fake(), SPEC)
    drift = meter.measure(Fake())
    assert drift.agreement == 1.0 and drift.slice_agreement == 1.0 and drift.embedding_error == 0.0
    assert drift.per_modality == {"CT": 1.0, "MR": 1.0}
    assert drift.per_case == {"a.npz": 1.0, "b.npz": 1.0, "c.npz": 1.0}


def test_perturbed_encoder_is_scored_per_case_and_modality():
    meter = DriftMeter(_calib(), Fake(), SPEC)
    rng = np.random.default_rng(1)
    noise = {}

    def noisy(image: np.ndarray) -> np.ndarray:
        key = image.tobytes()
        noise.setdefault(key, rng.standard_normal(image.shape).astype(np.float32))
        return image + 0.5 * noise[key]

    drift = meter.measure(Fake(noisy))
    assert 0.5 < drift.agreement < 1.0 and 0.3 < drift.embedding_error < 0.7
    assert set(drift.per_modality) == {"CT", "MR"}
    # a case's score is the mean of its slices; the limit applies to the mean over cases
    assert drift.per_case["c.npz"] == pytest.approx(np.mean(drift.per_slice[2:]))
    assert drift.agreement == pytest.approx(np.mean(list(drift.per_case.values())))
    assert meter.embedding_error(Fake(noisy), [0]) == pytest.approx(drift.embedding_error, rel=0.5)


def test_no_validation_slices_is_an_error():
    calib = _calib()
    calib.validation[:] = False
    with pytest.raises(ValueError, match="no validation slices"):
        DriftMeter(calib, Fake(), SPEC)
