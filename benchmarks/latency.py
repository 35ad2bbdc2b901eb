"""Per-stage CPU latency: PyTorch eager vs ONNX Runtime vs OpenVINO, one run, same cases.

Prints and writes a markdown table: encoder ms, decoder ms for 1 box and per box at
8 boxes per call, the share of a 2D case spent outside the two graphs, and each
backend's encoder speed-up over PyTorch eager and over OpenVINO FP32, with the inference
precision each backend reports. On a CPU with BF16 (AVX512-BF16 or AMX) it adds OpenVINO
BF16 rows, for the FP32 IR and for the INT8 IR's float parts. With ``--onnx-full`` /
``--openvino-full`` (exports with ``--prompts full``) it adds rows for the full-interface
decoder, prompted with boxes alone and with box + one click + the previous mask. Times are
the best of N rounds; ratios are the median (and 10th-90th percentile) of the round-by-round
ratios.

    python benchmarks/latency.py --onnx DIR --openvino DIR [--openvino-int8 DIR] [--openvino-int8-qat DIR]
        [--openvino-int8-variant LABEL=DIR ...] [--openvino-full DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from msam_export.checkpoints import default_checkpoint_path
from msam_export.contract import preprocess, prompt_arrays
from msam_export.data import load_case
from msam_export.export.parity import sample_path
from msam_export.runtime import Predictor, open_model
from msam_export.system import cpu_info, int8_pays_off

CASES = ("2DBox_US_HC18-000.npz", "2DBox_Fundus_CHASEDB1-Image01L.npz", "2DBox_Microscope_DSB2018-stardist.npz")


def interleaved_ms(
    calls: dict[str, Callable[[], object]], repeats: int, warm_each: bool = False
) -> dict[str, np.ndarray]:
    """``repeats`` timed runs per call, in ms, the calls interleaved run by run so that a
    slow phase of the shared VM hits all of them alike and round ``i`` of one call can be
    compared with round ``i`` of another. ``warm_each``: an untimed run right before each
    timed one, for short calls (a decoder) whose first run after another runtime's pays for
    cold caches and sleeping threads; in a real case the decoder runs right after its own
    encoder."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            if warm_each:
                call()
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: np.array(t) for name, t in times.items()}


def ratio_spread(numerator: np.ndarray, denominator: np.ndarray) -> tuple[float, float, float]:
    """Median, 10th and 90th percentile of the round-by-round ratio: on these VMs the
    machine's speed drifts between rounds, and a ratio of two calls timed next to each
    other moves much less than either time."""
    ratios = numerator / denominator
    return float(np.median(ratios)), float(np.percentile(ratios, 10)), float(np.percentile(ratios, 90))


def decoder_call(opened, embedding: np.ndarray, boxes: np.ndarray, prompt: str) -> Callable[[], object]:
    """One decoder call: ``boxes`` alone ("box"), or each box with one foreground click at its
    centre and a previous mask ("box+click+mask", full interface)."""
    if prompt == "box":
        return partial(opened.backend.decode, embedding, boxes)
    clicks = ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None, :]
    previous = np.random.default_rng(0).normal(size=(len(boxes), 1, 256, 256)).astype(np.float32)
    prompts = prompt_arrays(boxes, clicks, np.ones((len(boxes), 1)), previous)
    return partial(opened.backend.decode_prompts, embedding, prompts)


def measure(opened_models: dict, repeats: int, prompts: dict[str, str]) -> dict[str, dict]:
    """Encoder ms, decoder ms for 1 prompt and per prompt at 8 per call (best of the
    rounds), the round-by-round encoder speed-up over eager and 8/1 ratio, and the
    share of a 2D case's wall time spent outside the two graphs, per backend
    (``prompts[name]``: what its decoder is prompted with, see ``decoder_call``)."""
    cases = [load_case(sample_path(name)) for name in CASES]
    one = np.array([[40, 50, 200, 220]], np.float32)
    eight = np.repeat(one, 8, axis=0) + np.arange(8, dtype=np.float32)[:, None]
    tensors = {n: preprocess(cases[0].image, o.spec.input_size, o.spec.resize)[0] for n, o in opened_models.items()}
    embeddings = {n: o.backend.encode(tensors[n]) for n, o in opened_models.items()}
    encoder = interleaved_ms({n: partial(o.backend.encode, tensors[n]) for n, o in opened_models.items()}, repeats)
    decoder_calls = {}
    for n, o in opened_models.items():  # 1 and 8 boxes next to each other: their ratio is paired
        decoder_calls[(n, 1)] = decoder_call(o, embeddings[n], one, prompts[n])
        decoder_calls[(n, 8)] = decoder_call(o, embeddings[n], eight, prompts[n])
    decoder = interleaved_ms(decoder_calls, repeats, warm_each=True)
    eager = encoder[next(iter(opened_models))]
    results = {}
    for name, opened in opened_models.items():
        predictor = Predictor(opened.backend, opened.spec)
        other_share = []
        for case in cases[:2]:  # one-box 2D cases: the overhead around the graphs
            predictor.segment(case)
            t = (result := predictor.segment(case)).timings
            other_share.append(1 - (t.encoder_ms + t.decoder_ms) / result.wall_ms)
        per_box_8 = decoder[(name, 8)] / 8
        results[name] = {
            "encoder_ms": float(encoder[name].min()),
            "speedup": ratio_spread(eager, encoder[name]),
            "decoder_1_ms": float(decoder[(name, 1)].min()),
            "decoder_8_per_box_ms": float(per_box_8.min()),
            "batch_ratio": ratio_spread(per_box_8, decoder[(name, 1)]),
            "other_share": max(other_share),
        }
    return results


def spread(values: tuple[float, float, float]) -> str:
    return f"{values[0]:.2f} ({values[1]:.2f}-{values[2]:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="[default: embedded LiteMedSAM]")
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--openvino", type=Path)
    parser.add_argument("--openvino-int8", type=Path)
    parser.add_argument("--openvino-int8-qat", type=Path, help="an INT8 export made with --qat")
    parser.add_argument(
        "--openvino-int8-variant",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="another INT8 export, timed as 'OpenVINO INT8, LABEL' (repeatable)",
    )
    parser.add_argument("--onnx-full", type=Path, help="an ONNX export with --prompts full")
    parser.add_argument("--openvino-full", type=Path, help="an OpenVINO export with --prompts full")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=15, help="rounds [default: 15]")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cpu = cpu_info()
    isa = cpu["isa"]
    has_bf16 = isa["avx512_bf16"] or isa["amx_bf16"]
    runs = [("PyTorch eager FP32", args.checkpoint or default_checkpoint_path(), "f32")]
    if args.onnx:
        runs.append(("ONNX Runtime FP32", args.onnx, "f32"))
    if args.openvino:
        runs.append(("OpenVINO FP32", args.openvino, "f32"))
        if has_bf16:
            runs.append(("OpenVINO BF16", args.openvino, "bf16"))
    if args.openvino_int8:
        runs.append(("OpenVINO INT8", args.openvino_int8, "f32"))
        if has_bf16:
            runs.append(("OpenVINO INT8, BF16 elsewhere", args.openvino_int8, "bf16"))
    if args.openvino_int8_qat:
        runs.append(("OpenVINO INT8 + QAT", args.openvino_int8_qat, "f32"))
    for variant in args.openvino_int8_variant:
        label, _, path = variant.partition("=")
        runs.append((f"OpenVINO INT8, {label}", Path(path), "f32"))
    prompts = {name: "box" for name, _, _ in runs}
    for label, path in (("ONNX Runtime FP32", args.onnx_full), ("OpenVINO FP32", args.openvino_full)):
        if path:
            for prompt in ("box", "box+click+mask"):
                name = f"{label}, full interface, {prompt}"
                runs.append((name, path, "f32"))
                prompts[name] = prompt
    opened_models = {
        name: open_model(path, threads=args.threads, precision=precision) for name, path, precision in runs
    }
    results = measure(opened_models, args.repeats, prompts)
    opened = next(iter(opened_models.values()))
    flags = ", ".join(k for k, v in isa.items() if v) or "none"
    lines = [
        f"CPU: {cpu['model']} ({cpu['usable_cpus']} usable cores; ISA: {flags}); threads: {args.threads or 'all'}; "
        f"model: {opened.spec.title}; {args.repeats} rounds, backends interleaved run by run. Times: best round. "
        "Ratios: median of the round-by-round ratios (10th-90th percentile).",
        "",
        "| backend | ran | encoder ms | x eager | x OpenVINO FP32 | decoder ms (1 prompt) | "
        "decoder ms/prompt (8 per call) | 8/1 | outside graphs (2D case) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ov_fp32 = results.get("OpenVINO FP32", {}).get("encoder_ms")
    for name, r in results.items():
        vs_ov = f"{ov_fp32 / r['encoder_ms']:.2f}" if ov_fp32 else "-"  # best vs best
        backend = opened_models[name].backend
        ran = backend.actual_precision() if hasattr(backend, "actual_precision") else backend.precision
        lines.append(
            f"| {name} | {ran} | {r['encoder_ms']:.0f} | {spread(r['speedup'])} | {vs_ov} | "
            f"{r['decoder_1_ms']:.1f} | {r['decoder_8_per_box_ms']:.1f} | {spread(r['batch_ratio'])} | "
            f"{r['other_share']:.1%} |"
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
