"""Calibration slices from the users' own challenge-format data (see ``slices``)."""

from .slices import (
    Calibration,
    CalibrationSet,
    Slice,
    build_calibration,
    calibrate,
    load_calibration,
    save_calibration,
    select_slices,
)

__all__ = [
    "Calibration",
    "CalibrationSet",
    "Slice",
    "build_calibration",
    "calibrate",
    "load_calibration",
    "save_calibration",
    "select_slices",
]
