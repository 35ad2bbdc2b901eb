"""Ray overhead: ``segment`` in this process vs on a local Ray cluster with one worker, same cases.

Both sides run ``runtime.segment.segment`` with the same OpenVINO artifact and threads (the Ray
side as ``--ray local`` runs it: the worker opens the model from its path); the worker is warm
(opened once, like the local model) and its start is timed apart. Rounds are interleaved, the
order flipped every round, so that a slow phase of the shared VM hits both alike. Prints a
markdown table of wall times, the Ray overhead (total and per case), the per-case times the
worker measured against the local ones (how noisy the machine was), and an estimate for a
large run on N machines from those measurements.

    python benchmarks/cluster.py --openvino DIR [--threads 2] [--rounds 3] [--cases a.npz,b.npz] [-o results.md]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from msam_export.cluster import Cluster
from msam_export.runtime import open_model
from msam_export.runtime.segment import segment
from msam_export.system import cpu_info

SAMPLES = Path(__file__).resolve().parent.parent / "msam_export" / "samples" / "imgs"
ESTIMATE = {"2D": 5000, "3D": 500}  # the large run to estimate
MACHINES = (1, 4, 16, 64)


def inputs_dir(cases: list[str] | None, tmp: Path) -> Path:
    """The sample cases (all, or a named subset copied to ``tmp``)."""
    if not cases:
        return SAMPLES
    folder = tmp / "imgs"
    folder.mkdir()
    for name in cases:
        shutil.copy(SAMPLES / name, folder / name)
    return folder


def timed_run(model: object, inputs: Path, out: Path, cluster: Cluster | None) -> tuple[float, list[dict]]:
    """(wall seconds, rows) of one ``segment`` run into a fresh ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    run = segment(model, inputs, out, cluster=cluster)
    wall = time.perf_counter() - start
    failed = [r for r in run.rows if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"cases failed: {failed}")
    return wall, run.rows


def same_segs(a: Path, b: Path) -> bool:
    """Whether two segment outputs hold identical segs arrays."""
    names = sorted(p.name for p in a.glob("*.npz"))
    if names != sorted(p.name for p in b.glob("*.npz")):
        return False
    for name in names:
        with np.load(a / name) as x, np.load(b / name) as y:
            if x["segs"].dtype != y["segs"].dtype or not np.array_equal(x["segs"], y["segs"]):
                return False
    return True


def per_case_s(rows_by_round: list[list[dict]]) -> dict[str, dict[str, float]]:
    """Median over rounds of each case's worker-measured wall time, in seconds, keyed by case."""
    cases = [r["case"] for r in rows_by_round[0]]
    return {
        c: {
            "dims": next(r["dims"] for r in rows_by_round[0] if r["case"] == c),
            "s": statistics.median(next(r["wall_ms"] for r in rows if r["case"] == c) for rows in rows_by_round) / 1e3,
            "slices": next(r["encoder_calls"] for r in rows_by_round[0] if r["case"] == c),
        }
        for c in cases
    }


def measure(ov: Path, inputs: Path, threads: int, rounds: int, tmp: Path) -> dict:
    """Opens both sides (timed), then ``rounds`` interleaved timed runs of each."""
    start = time.perf_counter()
    local_model = open_model(ov, threads=threads, need="segment")
    local_open = time.perf_counter() - start
    start = time.perf_counter()
    cluster = Cluster.connect("local", threads=threads)
    connect = time.perf_counter() - start
    first = tmp / "first"
    first.mkdir()
    shutil.copy(min(inputs.glob("*.npz")), first)
    with cluster:
        cold, _ = timed_run(ov, first, tmp / "ray", cluster)  # starts the worker (compiles there), one case
        warm, _ = timed_run(local_model, first, tmp / "local", None)  # the local side's first run, same case
        walls: dict[str, list[float]] = {"local": [], "ray": []}
        rows: dict[str, list[list[dict]]] = {"local": [], "ray": []}
        for i in range(rounds):
            order = ("local", "ray") if i % 2 == 0 else ("ray", "local")
            for side in order:
                wall, got = timed_run(
                    local_model if side == "local" else ov, inputs, tmp / side, cluster if side == "ray" else None
                )
                walls[side].append(wall)
                rows[side].append(got)
        workers = cluster.workers
    return {
        "walls": walls,
        "rows": rows,
        "start_s": cold - warm,  # worker start + model compile on it
        "connect_s": connect,
        "local_open_s": local_open,
        "workers": workers,
        "identical": same_segs(tmp / "local", tmp / "ray"),
    }


def overhead_lines(m: dict) -> list[str]:
    local, ray = np.array(m["walls"]["local"]), np.array(m["walls"]["ray"])
    cases = len(m["rows"]["local"][0])
    ratios = ray / local
    inner = {s: np.array([sum(r["wall_ms"] for r in rows) / 1e3 for rows in m["rows"][s]]) for s in ("local", "ray")}
    outside = {s: np.array(m["walls"][s]) - inner[s] for s in inner}  # load, save, dispatch: per run
    per_case_ms = (np.median(outside["ray"]) - np.median(outside["local"])) / cases * 1e3
    lines = [
        "| round | local wall s | Ray wall s | Ray / local | local in-case s | Ray in-case s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for i in range(len(local)):
        cells = (local[i], ray[i], ratios[i], inner["local"][i], inner["ray"][i])
        lines.append(
            f"| {i + 1} | " + " | ".join(f"{c:.3f}" if j == 2 else f"{c:.2f}" for j, c in enumerate(cells)) + " |"
        )
    lines += [
        f"| **median** | **{np.median(local):.2f}** | **{np.median(ray):.2f}** | **{np.median(ratios):.3f}** "
        f"| {np.median(inner['local']):.2f} | {np.median(inner['ray']):.2f} |",
        "",
        f"- Ray overhead: {100 * (np.median(ratios) - 1):+.1f} % of the wall time (median of the round ratios; "
        f"range {100 * (ratios.min() - 1):+.1f} % to {100 * (ratios.max() - 1):+.1f} %), target <= +10 %.",
        f"- Time outside the cases (load, save, transfer, dispatch), per case: local "
        f"{np.median(outside['local']) / cases * 1e3:.0f} ms, Ray {np.median(outside['ray']) / cases * 1e3:.0f} ms: "
        f"Ray adds {per_case_ms:.0f} ms per case.",
        f"- In-case time (the worker's own `wall_ms`, same computation both sides), Ray / local: "
        f"{np.median(inner['ray'] / inner['local']):.3f} (spread {np.min(inner['ray'] / inner['local']):.3f}-"
        f"{np.max(inner['ray'] / inner['local']):.3f}): how much the shared machine moved between runs.",
        f"- One-off costs: `ray.init` (local cluster) {m['connect_s']:.1f} s; worker start + model compile "
        f"{m['start_s']:.1f} s (first Ray run of one case minus the local run of it); local open + compile "
        f"{m['local_open_s']:.1f} s.",
        f"- Segs identical local vs Ray: {'yes' if m['identical'] else 'NO'}; worker(s): "
        + ", ".join(f"{w['host']} pid {w['pid']} ({w['transfer']})" for w in m["workers"]),
    ]
    return lines


def estimate_lines(m: dict, threads: int) -> list[str]:
    """Wall time of ESTIMATE cases on N machines like this one: per-case times measured here
    (median over rounds), ideal scaling, plus the measured Ray per-case overhead."""
    per_case = per_case_s(m["rows"]["ray"])
    by_dims = {d: [c for c in per_case.values() if c["dims"] == d] for d in ESTIMATE}
    mean_s = {d: statistics.mean(c["s"] for c in cs) for d, cs in by_dims.items() if cs}
    slice_s = statistics.mean(c["s"] / c["slices"] for c in by_dims["3D"]) if by_dims["3D"] else float("nan")
    cases = len(m["rows"]["ray"][0])
    runs = zip(m["walls"]["ray"], m["rows"]["ray"], strict=True)
    outside = [wall - sum(r["wall_ms"] for r in rows) / 1e3 for wall, rows in runs]
    overhead_s = max(0.0, statistics.median(outside) / cases)  # per case on Ray: load, save, transfer, dispatch
    actors = max(1, int(cpu_info()["usable_cpus"]) // threads)
    total = sum(ESTIMATE[d] * (mean_s.get(d, 0.0) + overhead_s) for d in ESTIMATE)
    lines = [
        f"Per case measured here (Ray worker, {threads} threads, median over rounds): 2D {mean_s.get('2D', 0):.2f} s "
        f"(mean of {len(by_dims['2D'])} sample cases), 3D {mean_s.get('3D', 0):.2f} s (mean of {len(by_dims['3D'])} "
        f"small sample volumes, {slice_s:.2f} s per slice), plus {overhead_s * 1e3:.0f} ms per case outside the case "
        f"(load, save, transfer, dispatch). {ESTIMATE['2D']} 2D + {ESTIMATE['3D']} 3D cases = {total / 3600:.1f} "
        f"machine-hours of this {cpu_info()['usable_cpus']}-CPU VM ({actors} worker(s) per machine).",
        "",
        "| machines | workers | wall time (ideal scaling) |",
        "|---:|---:|---:|",
    ]
    for n in MACHINES:
        lines.append(f"| {n} | {n * actors} | {total / (n * actors) / 3600:.2f} h |")
    lines.append("")
    lines.append(
        f"Plus once per run: `ray.init`/connect and worker start with model compile, "
        f"{m['connect_s'] + m['start_s']:.0f} s measured here (workers start in parallel: this does not grow with N)."
    )
    lines.append("")
    lines.append(
        f"A challenge 3D volume has far more slices than these samples: at {slice_s:.2f} s per slice a 200-slice "
        f"volume takes ~{200 * slice_s / 60:.0f} min on one worker, so 500 such volumes add "
        f"{500 * 200 * slice_s / 3600:.0f} machine-hours; the table scales the same way."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openvino", type=Path, required=True, help="LiteMedSAM OpenVINO artifact dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", help="comma-separated sample case names [default: all bundled samples]")
    parser.add_argument("-o", "--output", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = inputs_dir(args.cases.split(",") if args.cases else None, Path(tmp))
        m = measure(args.openvino.resolve(), inputs, args.threads, args.rounds, Path(tmp))
    cpu = cpu_info()
    lines = [
        f"# Ray overhead: segment locally vs on a local Ray cluster, {cpu['model']}, {cpu['usable_cpus']} CPUs",
        "",
        f"LiteMedSAM OpenVINO FP32, {args.threads} threads on both sides (Ray: one worker of {args.threads} CPUs), "
        f"{len(m['rows']['local'][0])} bundled sample cases, {args.rounds} interleaved rounds "
        f"(order flipped each round), warm model on both sides. `python benchmarks/cluster.py`.",
        "",
        *overhead_lines(m),
        "",
        "## Estimate: 5,000 2D + 500 3D cases on N machines",
        "",
        *estimate_lines(m, args.threads),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
