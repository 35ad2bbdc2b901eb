"""Verify: drift (agreement, DSC/NSD against ground truth) and latency of an artifact."""

from .report import SCHEMA, Thresholds, run_verify
from .system import cpu_info, int8_pays_off, peak_rss_mb

__all__ = ["SCHEMA", "Thresholds", "cpu_info", "int8_pays_off", "peak_rss_mb", "run_verify"]
