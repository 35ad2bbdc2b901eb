"""What machine a measurement ran on: CPU model, ISA flags, memory high-water mark."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path
from typing import Any

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_info() -> dict[str, Any]:
    """{"model", "logical_cpus", "usable_cpus", "isa": {flag: bool}} from /proc/cpuinfo."""
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("unknown", platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
    }


def int8_pays_off(isa: dict[str, bool]) -> bool:
    """INT8 is only faster than FP32 with VNNI or AMX."""
    return bool(isa.get("avx512_vnni") or isa.get("amx_int8"))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
