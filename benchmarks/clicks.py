"""Click refinement of FP32 and INT8 full-interface artifacts on the bundled 2D cases.

Exports OpenVINO FP32 with ``--prompts full``, quantizes it to INT8 with the default recipe
(calibration as ``demo`` makes it: 40 slices of the bundled samples), runs ``verify --prompts
clicks:K`` on both against the PyTorch model and prints per-round tables: agreement, and DSC/NSD
of the reference and the candidate against ground truth.

    python benchmarks/clicks.py [--rounds 5] [--work DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import msam_export as mx
from msam_export.data import list_cases
from msam_export.system import cpu_info


def table(name: str, clicks: dict) -> list[str]:
    lines = [
        f"### {name}",
        "",
        "| round | agreement | DSC ref | DSC cand | NSD ref | NSD cand |",
        "|---|---|---|---|---|---|",
    ]
    for r in clicks["per_round"]:
        lines.append(
            f"| {r['round']} | {r['agreement_dsc']:.4f} | {r['reference_dsc']:.4f} | {r['candidate_dsc']:.4f} | "
            f"{r['reference_nsd']:.4f} | {r['candidate_nsd']:.4f} |"
        )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="keep the artifacts here [default: a temp dir]")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/clicks-litemedsam.md"))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="msam-clicks-"))
    checkpoint = mx.default_checkpoint_path()
    cases = [p.name for p in list_cases(mx.SAMPLES / "imgs") if p.name.startswith("2D")]
    start = time.perf_counter()
    fp32 = mx.export_openvino(checkpoint, work / "openvino-full", prompts="full", overwrite=True)
    mx.calibrate(mx.SAMPLES, work / "calib.npz", model=checkpoint, n=40, val_fraction=0.25)
    int8 = mx.quantize_openvino(fp32.path, work / "openvino-int8-full", calibration=work / "calib.npz", overwrite=True)
    made = time.perf_counter() - start
    cpu = cpu_info()
    lines = [
        f"CPU: {cpu['model']} ({cpu['usable_cpus']} cores); LiteMedSAM real weights; {len(cases)} bundled 2D cases "
        f"({', '.join(cases)}); {args.rounds} click rounds after the box (round 0). Reference: PyTorch FP32, "
        f"refining on its own masks. INT8: default recipe, target {int8.record['quantization']['target']}, "
        f"calibrated on the bundled samples (in sample). Export + calibrate + quantize: {made / 60:.1f} min.",
        "",
    ]
    for name, artifact in (("OpenVINO FP32, full interface", fp32), ("OpenVINO INT8, full interface", int8)):
        t0 = time.perf_counter()
        clicks = mx.verify(artifact.path, mx.SAMPLES, cases=cases, prompts=f"clicks:{args.rounds}").report["clicks"]
        lines += table(f"{name} ({(time.perf_counter() - t0) / 60:.1f} min)", clicks)
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
