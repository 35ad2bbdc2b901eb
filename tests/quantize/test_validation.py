"""The drift metric: mask agreement against cached FP32 outputs."""

from __future__ import annotations

import numpy as np
import pytest

from msam_export.calibrate import CalibrationSet
from msam_export.quantize.validation import DriftMeter


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
    )


def decoder(embeddings: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Two "boxes", one mask each: the sign pattern of the two channels."""
    return np.stack([embeddings[0, :1], embeddings[0, 1:2]])


def test_identical_encoder_agrees_fully():
    meter = DriftMeter(_calib(), decoder)
    drift = meter.measure(lambda image: image)
    assert drift.agreement == 1.0 and drift.embedding_error == 0.0
    assert drift.per_modality == {"CT": 1.0, "MR": 1.0}


def test_perturbed_encoder_is_scored_per_modality():
    meter = DriftMeter(_calib(), decoder)
    rng = np.random.default_rng(1)
    noise = {}

    def encoder(image: np.ndarray) -> np.ndarray:
        key = image.tobytes()
        noise.setdefault(key, rng.standard_normal(image.shape).astype(np.float32))
        return image + 0.5 * noise[key]

    drift = meter.measure(encoder)
    assert 0.5 < drift.agreement < 1.0
    assert 0.3 < drift.embedding_error < 0.7
    assert set(drift.per_modality) == {"CT", "MR"}
    assert meter.embedding_error(encoder, [0]) == pytest.approx(drift.embedding_error, rel=0.5)


def test_no_validation_slices_is_an_error():
    calib = _calib()
    calib.validation[:] = False
    with pytest.raises(ValueError, match="no validation slices"):
        DriftMeter(calib, decoder)
