"""The drift metric: mask agreement against cached FP32 outputs."""

from __future__ import annotations

import numpy as np
import pytest

from msam_export.calibrate import CalibrationSet
from msam_export.quantize.restore import ranking_subset
from msam_export.quantize.validation import Drift, DriftMeter, Goal
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


def _drift(agreement: float, per_modality: dict[str, float]) -> Drift:
    return Drift(agreement, agreement, (), {}, 0.1, per_modality)


def test_a_modality_floor_fails_what_the_mean_passes():
    weak = _drift(0.97, {"CT": 0.99, "Microscope": 0.95})
    assert Goal(0.05).met(weak) and Goal(0.05).weakest_modality(weak) is None
    floor = Goal(0.05, max_modality_drift=0.03)
    assert not floor.met(weak)
    assert floor.shortfall(weak) == pytest.approx(0.02)
    assert floor.weakest_modality(weak) == "Microscope"
    assert "weakest modality Microscope 0.9500 (target 0.9700)" in floor.describe(weak)
    assert floor.met(_drift(0.97, {"CT": 0.99, "Microscope": 0.9701}))


def test_without_a_floor_the_goal_is_the_mean_limit():
    """What accuracy control and QAT decide by, with the defaults: the mean agreement alone."""
    rng = np.random.default_rng(0)
    drifts = [_drift(float(a), {"CT": float(b), "US": float(c)}) for a, b, c in rng.uniform(0.9, 1.0, (50, 3))]
    goal = Goal(0.05)
    assert [goal.met(d) for d in drifts] == [d.agreement >= 0.95 for d in drifts]
    assert sorted(drifts, key=goal.rank) == sorted(drifts, key=lambda d: d.agreement)
    assert not goal.met(_drift(float("nan"), {}))


def test_goals_rank_by_what_they_ask_for():
    """Mean only: the higher mean is better. With a floor: the one nearer the floor is, at a lower mean."""
    high_mean = _drift(0.98, {"CT": 0.999, "Microscope": 0.95})
    even = _drift(0.975, {"CT": 0.98, "Microscope": 0.965})
    assert Goal(0.05).rank(high_mean) > Goal(0.05).rank(even)
    assert Goal(0.05, 0.03).rank(even) > Goal(0.05, 0.03).rank(high_mean)


def test_modules_are_ranked_on_the_weakest_modality_slices():
    meter = DriftMeter(_calib(), Fake(), SPEC)
    assert ranking_subset(meter, "MR", 3) == [2, 3]
    assert ranking_subset(meter, None, 3) == [0, 1, 2]
    assert ranking_subset(meter, "US", 2) == [0, 1]  # not among the validation slices: the first ones
