"""Verify: drift (agreement, DSC/NSD against ground truth) and latency of an artifact."""

from .report import SCHEMA, run_verify
from .run import VerifyResult, verify

__all__ = ["SCHEMA", "VerifyResult", "run_verify", "verify"]
