"""INT8 out of sample: two folds of the cases, stratified by modality; calibrate and quantize on one,
verify on the other, and swap, so every case is verified by an artifact that never saw it. The
in-sample figures (verified on the fold it was calibrated on) are printed beside them.

    python benchmarks/int8_folds.py --data ../shared/data --out /tmp/folds [--target auto] [--qat] [--seeds 0 1 2]

Prints markdown tables (per modality, per 2D case) and writes them to --report.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import msam_export as mx
from msam_export.data import data_dirs, list_cases, modality_of
from msam_export.errors import ParityError
from msam_export.limits import DEFAULT_MAX_DRIFT
from msam_export.quantize import QatOptions
from msam_export.system import cpu_info
from msam_export.verify.report import SIZE_BANDS, band_cells, band_name, size_bands


def folds(cases: list[Path]) -> tuple[list[Path], list[Path]]:
    """Every other case of each modality (sorted by name) into fold 0, the rest into fold 1."""
    by_modality: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(cases):
        by_modality[modality_of(path.name)].append(path)
    split: tuple[list[Path], list[Path]] = ([], [])
    for group in by_modality.values():
        for i, path in enumerate(group):
            split[i % 2].append(path)
    return split


def fold_dir(root: Path, cases: list[Path], gts: Path) -> Path:
    for sub in ("imgs", "gts"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for path in cases:
        (root / "imgs" / path.name).symlink_to(path.resolve())
        (root / "gts" / path.name).symlink_to((gts / path.name).resolve())
    return root


def mean(values) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def table(rows: list[dict], title: str) -> list[str]:
    """Per modality and 2D/3D: agreement (propagated, teacher-forced), DSC/NSD of FP32 and INT8."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["modality"]].append(row)
        groups[f"all {row['dims']}"].append(row)
        groups["overall"].append(row)
    lines = [
        f"### {title}",
        "",
        "| group | cases | agreement | teacher-forced | DSC FP32 | DSC INT8 | NSD FP32 | NSD INT8 | worst DSC loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(groups, key=lambda n: (n.startswith("all") or n == "overall", n)):
        g = groups[name]
        loss = max(r["reference"]["dsc"] - r["candidate"]["dsc"] for r in g)
        lines.append(
            f"| {name} | {len(g)} | {mean(r['agreement_dsc'] for r in g):.4f} | "
            f"{mean(r['teacher_forced_agreement_dsc'] for r in g):.4f} | "
            f"{mean(r['reference']['dsc'] for r in g):.4f} | {mean(r['candidate']['dsc'] for r in g):.4f} | "
            f"{mean(r['reference']['nsd'] for r in g):.4f} | {mean(r['candidate']['nsd'] for r in g):.4f} | "
            f"{loss:+.4f} |"
        )
    return [*lines, ""]


def size_table(rows: list[dict], title: str) -> list[str]:
    """2D agreement per modality by object size (the reference mask's pixels, ``SIZE_BANDS``)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["dims"] == "2D":
            groups[row["modality"]].append(row)
            groups["all 2D"].append(row)
    names = [band_name(low, high) for low, high in SIZE_BANDS]
    lines = [f"### {title}", "", "| group | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name in sorted(groups, key=lambda n: (n == "all 2D", n)):
        lines.append(f"| {name} | " + " | ".join(band_cells(size_bands(groups[name]), names)) + " |")
    return [*lines, "", "Agreement DSC of the boxes in each band of reference mask area; boxes in brackets.", ""]


def seeds_table(runs: dict[int, list[dict]]) -> list[str]:
    """Per modality, out of sample: agreement and DSC change (INT8 minus FP32, points) for each seed."""
    seeds = sorted(runs)
    groups: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for seed, rows in runs.items():
        for row in rows:
            for name in (row["modality"], f"all {row['dims']}", "overall"):
                groups[name][seed].append(row)
    lines = [
        "### Across calibration seeds, out of sample",
        "",
        "| group | agreement per seed | DSC change per seed (points) | DSC change mean +- sd |",
        "|---|---|---|---|",
    ]
    for name in sorted(groups, key=lambda n: (n.startswith("all") or n == "overall", n)):
        per_seed = groups[name]
        agreement = [mean(r["agreement_dsc"] for r in per_seed[s]) for s in seeds]
        change = [
            100 * (mean(r["candidate"]["dsc"] for r in per_seed[s]) - mean(r["reference"]["dsc"] for r in per_seed[s]))
            for s in seeds
        ]
        lines.append(
            f"| {name} | {' / '.join(f'{a:.4f}' for a in agreement)} | {' / '.join(f'{c:+.2f}' for c in change)} | "
            f"{np.mean(change):+.2f} +- {np.std(change, ddof=1) if len(change) > 1 else 0.0:.2f} |"
        )
    return [*lines, "", f"Seeds {', '.join(map(str, seeds))} of `calibrate` (which slices, in which order).", ""]


Rows = list[dict]


def run_folds(
    args: argparse.Namespace,
    cases: list[Path],
    gts: Path,
    seed: int,
    out: Path,
    fp32: Path,
    reference: Any,
    shared: dict,
) -> tuple[Rows, Rows, list[str]]:
    """Both folds for one calibration seed: (out-of-sample rows, in-sample rows, notes).
    ``reference`` (the PyTorch FP32 model) and its per-case cache ``shared`` serve every seed."""
    checkpoint = mx.default_checkpoint_path()
    out_of_sample: Rows = []
    in_sample: Rows = []
    notes: list[str] = []
    for k, (train, test) in enumerate((folds(cases), folds(cases)[::-1])):
        train_dir = out / f"fold{k}-train"
        test_dir = out / f"fold{k}-test"
        if not train_dir.is_dir():
            fold_dir(train_dir, train, gts)
            fold_dir(test_dir, test, gts)
        calib = out / f"fold{k}-calib.npz"
        int8 = out / f"fold{k}-int8"
        if (int8 / "export.json").is_file():  # a previous run's artifact: measure it again
            artifact = mx.open_artifact(int8)
        else:
            result = mx.calibrate(train_dir, calib, model=checkpoint, n=args.n, seed=seed)
            notes += [f"fold {k}: {w}" for w in result.warnings]
            qat = QatOptions(steps=args.qat_steps, seed=seed) if args.qat else None
            try:
                artifact = mx.quantize_openvino(
                    fp32,
                    int8,
                    calibration=calib,
                    target=args.target,
                    max_drift=args.max_drift,
                    max_modality_drift=args.max_modality_drift,
                    qat=qat,
                    overwrite=True,
                )
            except ParityError as exc:
                notes.append(f"fold {k}: not built: {exc}")
                continue
        seconds = artifact.record["timings_s"] and sum(artifact.record["timings_s"].values())
        q = artifact.record["quantization"]
        notes.append(
            f"fold {k}: calibrated on {len(train)} cases, quantized in {seconds / 60:.1f} min; validation agreement "
            f"{q['drift']['agreement_dsc']:.4f}; kept in float: "
            f"{[m['module'] for m in q['accuracy_control']['kept_float']]}; .bin {q['size_vs_fp32']:.0%} of FP32"
            + (
                f"; QAT {q['qat']['steps']} steps in {q['qat']['seconds'] / 60:.1f} min, agreement "
                f"{q['qat']['agreement_before']:.4f} -> {q['qat']['agreement_after']:.4f}, kept {q['qat']['kept']}"
                if "qat" in q
                else ""
            )
        )
        model = mx.open_model(int8)
        for rows, data in ((out_of_sample, test_dir), (in_sample, train_dir)):
            report = mx.verify(model, data, reference=reference, html=False, reference_cache=shared).report
            rows += [r for r in report["cases"] if "error" not in r]
    return out_of_sample, in_sample, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report", type=Path, default=Path("benchmarks/results/int8-litemedsam-folds.md"))
    parser.add_argument("--target", default="auto")
    parser.add_argument("--n", type=int, default=200, help="training slices per fold")
    parser.add_argument("--max-drift", type=float, default=DEFAULT_MAX_DRIFT, help="quantize_openvino's drift limit")
    parser.add_argument("--max-modality-drift", type=float, default=None, help="and for each modality's mean")
    parser.add_argument("--qat", action="store_true")
    parser.add_argument("--qat-steps", type=int, default=100)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="calibration seeds; the tables are the first one's"
    )
    args = parser.parse_args()
    imgs, gts = data_dirs(args.data)
    cases = list_cases(imgs)
    args.out.mkdir(parents=True, exist_ok=True)
    fp32 = args.out / "openvino"
    if not fp32.is_dir():
        mx.export_openvino(mx.default_checkpoint_path(), fp32)
    reference, shared = mx.open_model(mx.default_checkpoint_path()), {}
    runs: dict[int, tuple[Rows, Rows, list[str]]] = {}
    for seed in args.seeds:
        out = args.out if seed == 0 else args.out / f"seed{seed}"  # a directory's artifacts are reused
        runs[seed] = run_folds(args, cases, gts, seed, out, fp32, reference, shared)
        print(f"seed {seed}: done", flush=True)
    out_of_sample, in_sample, _ = runs[args.seeds[0]]
    notes = [f"seed {seed}, {note}" if len(runs) > 1 else note for seed, run in runs.items() for note in run[2]]
    system = cpu_info()
    seeds = f" --seeds {' '.join(map(str, args.seeds))}" if len(args.seeds) > 1 else ""
    floor = f" --max-modality-drift {args.max_modality_drift}" if args.max_modality_drift is not None else ""
    lines = [
        "# LiteMedSAM INT8: out of sample (two folds) and in sample",
        "",
        f"{time.strftime('%Y-%m-%d')}, {system['model']} ({system['usable_cpus']} cores, ISA: "
        f"{', '.join(k for k, v in system['isa'].items() if v)}), target {args.target}, real weights, "
        f"`benchmarks/int8_folds.py --n {args.n} --max-drift {args.max_drift}{floor}{' --qat' if args.qat else ''}"
        f"{seeds}`, "
        f"data: {len(cases)} cases.",
        "",
        *table(out_of_sample, "Out of sample: each case verified by the artifact of the other fold"),
        *table(in_sample, "In sample: each case verified by the artifact calibrated on its own fold"),
        *size_table(out_of_sample, "2D agreement by object size, out of sample"),
        *(seeds_table({seed: run[0] for seed, run in runs.items()}) if len(runs) > 1 else []),
        "### Per 2D case, out of sample",
        "",
        "| case | agreement | DSC FP32 -> INT8 |",
        "|---|---|---|",
        *(
            f"| {r['case']} | {r['agreement_dsc']:.4f} | {r['reference']['dsc']:.4f} -> {r['candidate']['dsc']:.4f} |"
            for r in sorted(out_of_sample, key=lambda r: r["case"])
            if r["dims"] == "2D"
        ),
        "",
        *(f"- {n}" for n in notes),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.report.write_text(text)
    rows = {seed: {"out": run[0], "in": run[1]} for seed, run in runs.items()}
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
