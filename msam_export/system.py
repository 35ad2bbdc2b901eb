"""What machine a measurement ran on: host, CPU model, ISA flags, memory high-water mark."""

from __future__ import annotations

import os
import platform
import resource
from functools import lru_cache
from pathlib import Path
from typing import Any

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


TARGETS = ("avx2", "avx512", "vnni", "amx")


@lru_cache(maxsize=1)
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


def host_and_cpu() -> dict[str, str]:
    """{"host": this machine's name, "cpu": its CPU model}: where a latency was measured."""
    return {"host": platform.node(), "cpu": str(cpu_info()["model"])}


def target_of(isa: dict[str, bool]) -> str:
    """The INT8 arithmetic a CPU with these ISA flags runs: "amx", "vnni" (AVX-512 VNNI),
    "avx512" (AVX-512 without VNNI) or "avx2"."""
    if isa.get("amx_int8"):
        return "amx"
    if isa.get("avx512_vnni"):
        return "vnni"
    if isa.get("avx512f"):
        return "avx512"
    return "avx2"


def needs_vnni(target: str) -> bool:
    """Whether INT8 made for ``target`` has full 8-bit weights, which only VNNI/AMX CPUs add without
    saturating (targets without VNNI get 7-bit weights, which give the same results everywhere)."""
    return target in ("vnni", "amx")


def runs_natively(target: str | None) -> bool:
    """Whether this CPU runs INT8 of ``target`` as its target does (else it is emulated in f32)."""
    return target is None or not needs_vnni(target) or target_of(cpu_info()["isa"]) in ("vnni", "amx")


def int8_pays_off(isa: dict[str, bool]) -> bool:
    """INT8 is only faster than FP32 with VNNI or AMX."""
    return bool(isa.get("avx512_vnni") or isa.get("amx_int8"))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
