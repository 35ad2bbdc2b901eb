"""Per-stage CPU latency: PyTorch eager vs ONNX Runtime vs OpenVINO, one run, same cases.

Prints and writes a markdown table: encoder ms, decoder ms for 1 box and per box at
8 boxes per call, the share of a 2D case spent outside the two graphs, and each
backend's encoder speed-up over PyTorch eager. Timings are the best of N runs.

    python benchmarks/latency.py --onnx DIR --openvino DIR [--openvino-int8 DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from msam_export.checkpoints import default_checkpoint_path
from msam_export.contract import preprocess
from msam_export.data import load_case
from msam_export.export.parity import sample_path
from msam_export.runtime import Predictor, open_model
from msam_export.verify.system import cpu_info, int8_pays_off

CASES = ("2DBox_US_HC18-000.npz", "2DBox_Fundus_CHASEDB1-Image01L.npz", "2DBox_Microscope_DSB2018-stardist.npz")


def best_ms(fn, repeats: int) -> float:
    """Best of ``repeats`` timed runs after a warm-up: on a shared 2-core VM the median
    moves by 10-20% between identical runs, the minimum much less (timeit's advice)."""
    fn()  # warm-up (first-call allocations, OpenVINO compilation of a box bucket)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def encoder_ms(opened_models: dict, repeats: int) -> dict[str, float]:
    """Encoder time per backend, the backends interleaved run by run so that a slow
    phase of the shared machine hits all of them alike; best of ``repeats``."""
    tensors = {}
    for name, opened in opened_models.items():
        case = load_case(sample_path(CASES[0]))
        tensors[name], _ = preprocess(case.image, opened.spec.input_size, opened.spec.resize)
        opened.backend.encode(tensors[name])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in opened_models}
    for _ in range(repeats):
        for name, opened in opened_models.items():
            start = time.perf_counter()
            opened.backend.encode(tensors[name])
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: min(t) for name, t in times.items()}


def measure(opened, repeats: int) -> dict[str, float]:
    spec, backend = opened.spec, opened.backend
    cases = [load_case(sample_path(name)) for name in CASES]
    tensor, _ = preprocess(cases[0].image, spec.input_size, spec.resize)
    embedding = backend.encode(tensor)
    one = np.array([[40, 50, 200, 220]], np.float32)
    eight = np.repeat(one, 8, axis=0) + np.arange(8, dtype=np.float32)[:, None]
    decoder_1 = best_ms(lambda: backend.decode(embedding, one), repeats)
    decoder_8 = best_ms(lambda: backend.decode(embedding, eight), repeats) / 8
    predictor = Predictor(backend, spec)
    other_share = []
    for case in cases[:2]:  # one-box 2D cases: the overhead around the graphs
        predictor.segment(case)
        result = predictor.segment(case)
        t = result.timings
        other_share.append(1 - (t.encoder_ms + t.decoder_ms) / result.wall_ms)
    return {
        "decoder_1_ms": decoder_1,
        "decoder_8_per_box_ms": decoder_8,
        "batch_ratio": decoder_8 / decoder_1,
        "other_share": max(other_share),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="[default: embedded LiteMedSAM]")
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--openvino", type=Path)
    parser.add_argument("--openvino-int8", type=Path)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cpu = cpu_info()
    isa = cpu["isa"]
    runs = [("PyTorch eager FP32", args.checkpoint or default_checkpoint_path(), "f32")]
    if args.onnx:
        runs.append(("ONNX Runtime FP32", args.onnx, "f32"))
    if args.openvino:
        runs.append(("OpenVINO FP32", args.openvino, "f32"))
        if isa["avx512_bf16"] or isa["amx_bf16"]:
            runs.append(("OpenVINO BF16", args.openvino, "bf16"))
    if args.openvino_int8:
        runs.append(("OpenVINO INT8", args.openvino_int8, "f32"))
    opened_models = {
        name: open_model(path, threads=args.threads, precision=precision) for name, path, precision in runs
    }
    encoders = encoder_ms(opened_models, args.repeats)
    results = {}
    for name, opened in opened_models.items():
        results[name] = measure(opened, args.repeats) | {"encoder_ms": encoders[name]}
        print(f"{name}: {results[name]}", flush=True)
    eager = results["PyTorch eager FP32"]["encoder_ms"]
    flags = ", ".join(k for k, v in isa.items() if v) or "none"
    lines = [
        f"CPU: {cpu['model']} ({cpu['usable_cpus']} usable cores; ISA: {flags}); threads: {args.threads or 'all'}; "
        f"model: {opened.spec.title}; best of {args.repeats} runs (encoders interleaved run by run).",
        "",
        "| backend | encoder ms | x eager | decoder ms (1 box) | decoder ms/box (8 per call) | 8-box/1-box | "
        "outside graphs (2D case) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['encoder_ms']:.0f} | {eager / r['encoder_ms']:.2f} | {r['decoder_1_ms']:.1f} | "
            f"{r['decoder_8_per_box_ms']:.1f} | {r['batch_ratio']:.2f} | {r['other_share']:.1%} |"
        )
    if not int8_pays_off(isa):
        lines += ["", "This CPU has neither AVX512-VNNI nor AMX: INT8 is not expected to be faster than FP32 here."]
    text = "\n".join(lines) + "\n"
    print(text)
    slug = re.sub(r"[^a-z0-9]+", "-", cpu["model"].lower()).strip("-")[:40]
    out = args.out or Path("benchmarks/results") / f"latency-{slug}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
