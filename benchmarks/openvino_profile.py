"""Where an OpenVINO encoder spends its time: per-layer-type profile, one table per run.

Sums OpenVINO's per-node performance counters (PERF_COUNT) over N timed runs of the
encoder on a bundled 2D sample, grouped by layer type and the kernel that ran it
(e.g. ``brgconv_avx512_amx_I8`` vs ``jit_avx2_FP32``), so that FP32, BF16 and INT8
artifacts can be compared op by op at a given thread count.

    python benchmarks/openvino_profile.py DIR [DIR ...] [--threads 2 16] [--precision f32 bf16]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import openvino as ov

from msam_export.artifact import ENCODER_INPUT
from msam_export.artifact import read_record as read_metadata
from msam_export.contract import preprocess
from msam_export.data import load_case
from msam_export.export.parity import sample_path
from msam_export.zoo import get_spec

SAMPLE = "2DBox_US_HC18-000.npz"


def profile(encoder_xml: Path, image: np.ndarray, threads: int, precision: str, runs: int) -> dict:
    """(layer type, kernel) -> [mean ms per run, nodes per run] over ``runs`` timed runs."""
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": precision,
        "PERF_COUNT": True,
    }
    request = ov.Core().compile_model(str(encoder_xml), "CPU", config).create_infer_request()
    request.infer({ENCODER_INPUT: image})
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for _ in range(runs):
        request.infer({ENCODER_INPUT: image})
        for node in request.profiling_info:
            if node.status != node.Status.EXECUTED:
                continue
            entry = sums[(node.node_type, node.exec_type)]
            entry[0] += node.real_time.total_seconds() * 1e3 / runs
            entry[1] += 1 / runs
    return dict(sums)


def table(title: str, sums: dict, top: int) -> str:
    total = sum(ms for ms, _ in sums.values())
    lines = [f"{title}: {total:.1f} ms summed over nodes", "", "| layer type | kernel | nodes | ms | share |"]
    lines.append("|---|---|---|---|---|")
    for (kind, kernel), (ms, count) in sorted(sums.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"| {kind} | {kernel} | {count:.0f} | {ms:.1f} | {ms / total:.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", type=Path, nargs="+", help="OpenVINO export dirs (encoder.xml inside)")
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--precision", nargs="+", default=["f32"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    case = load_case(sample_path(SAMPLE))
    for threads in args.threads:
        for folder in args.dirs:
            spec = get_spec(read_metadata(folder)["model"]["variant"])
            image = preprocess(case.image, spec.input_size, spec.resize)[0]
            for precision in args.precision:
                sums = profile(folder / "encoder.xml", image, threads, precision, args.runs)
                print(table(f"{folder.name}, {precision}, {threads} threads", sums, args.top))


if __name__ == "__main__":
    main()
