"""INT8 out of sample: two folds of the cases, stratified by modality; calibrate and quantize on one,
verify on the other, and swap, so every case is verified by an artifact that never saw it. The
in-sample figures (verified on the fold it was calibrated on) are printed beside them.

    python benchmarks/int8_folds.py --data ../shared/data --out /tmp/folds [--target auto] [--qat]

Prints markdown tables (per modality, per 2D case) and writes them to --report.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report", type=Path, default=Path("benchmarks/results/int8-litemedsam-folds.md"))
    parser.add_argument("--target", default="auto")
    parser.add_argument("--n", type=int, default=200, help="training slices per fold")
    parser.add_argument("--max-drift", type=float, default=DEFAULT_MAX_DRIFT, help="quantize_openvino's drift limit")
    parser.add_argument("--qat", action="store_true")
    parser.add_argument("--qat-steps", type=int, default=100)
    args = parser.parse_args()
    imgs, gts = data_dirs(args.data)
    cases = list_cases(imgs)
    checkpoint = mx.default_checkpoint_path()
    args.out.mkdir(parents=True, exist_ok=True)
    fp32 = args.out / "openvino"
    if not fp32.is_dir():
        mx.export_openvino(checkpoint, fp32)
    reference = mx.open_model(checkpoint)
    shared: dict = {}
    out_of_sample, in_sample, notes = [], [], []
    for k, (train, test) in enumerate((folds(cases), folds(cases)[::-1])):
        train_dir = args.out / f"fold{k}-train"
        test_dir = args.out / f"fold{k}-test"
        if not train_dir.is_dir():
            fold_dir(train_dir, train, gts)
            fold_dir(test_dir, test, gts)
        calib = args.out / f"fold{k}-calib.npz"
        int8 = args.out / f"fold{k}-int8"
        if (int8 / "export.json").is_file():  # a previous run's artifact: measure it again
            artifact = mx.open_artifact(int8)
        else:
            result = mx.calibrate(train_dir, calib, model=checkpoint, n=args.n)
            notes += [f"fold {k}: {w}" for w in result.warnings]
            qat = QatOptions(steps=args.qat_steps) if args.qat else None
            try:
                artifact = mx.quantize_openvino(
                    fp32, int8, calibration=calib, target=args.target, max_drift=args.max_drift, qat=qat, overwrite=True
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
    system = cpu_info()
    lines = [
        "# LiteMedSAM INT8: out of sample (two folds) and in sample",
        "",
        f"{time.strftime('%Y-%m-%d')}, {system['model']} ({system['usable_cpus']} cores, ISA: "
        f"{', '.join(k for k, v in system['isa'].items() if v)}), target {args.target}, real weights, "
        f"`benchmarks/int8_folds.py --n {args.n} --max-drift {args.max_drift}{' --qat' if args.qat else ''}`, "
        f"data: {len(cases)} cases.",
        "",
        *table(out_of_sample, "Out of sample: each case verified by the artifact of the other fold"),
        *table(in_sample, "In sample: each case verified by the artifact calibrated on its own fold"),
        *size_table(out_of_sample, "2D agreement by object size, out of sample"),
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
    (args.out / "rows.json").write_text(json.dumps({"out": out_of_sample, "in": in_sample}, indent=1))


if __name__ == "__main__":
    main()
