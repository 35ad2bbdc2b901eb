"""Calibration slices from the users' own challenge-format data (see ``slices``)."""

from .slices import CalibrationSet, Slice, build_calibration, load_calibration, save_calibration, select_slices

__all__ = ["CalibrationSet", "Slice", "build_calibration", "load_calibration", "save_calibration", "select_slices"]
