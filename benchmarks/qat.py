"""What ``openvino --int8 --qat`` costs and gains: PTQ alone against PTQ + quantization-aware
distillation, same calibration file, same validation cases (whole cases held out of calibration).

Prints a markdown table: wall time of each quantize call and of the distillation itself, and the
mask agreement with FP32 on the validation cases (overall and per case, 3D propagated).

    python benchmarks/qat.py [--steps 60] [--seconds 900] [--work DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import msam_export as mx
from msam_export.errors import ParityError
from msam_export.quantize import QatOptions
from msam_export.system import cpu_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="QAT optimizer steps (one slice each)")
    parser.add_argument("--seconds", type=float, default=900.0, help="QAT time limit")
    parser.add_argument("--lr", type=float, default=QatOptions.learning_rate, help="QAT learning rate")
    parser.add_argument(
        "--eval-every", type=int, default=QatOptions.eval_every, help="score the student every N steps, keep the best"
    )
    parser.add_argument("--n", type=int, default=40, help="calibration slices")
    parser.add_argument("--work", type=Path, default=None, help="keep the artifacts here [default: a temp dir]")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/qat-litemedsam.md"))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="msam-qat-"))
    checkpoint = mx.default_checkpoint_path()
    fp32 = mx.export_openvino(checkpoint, work / "openvino", overwrite=True)
    calib = work / "calib.npz"
    mx.calibrate(mx.SAMPLES, calib, model=checkpoint, n=args.n, val_fraction=0.25)
    runs: dict = {}
    failed: dict[str, tuple[str, float]] = {}
    distillation = QatOptions(
        steps=args.steps, max_seconds=args.seconds, learning_rate=args.lr, eval_every=args.eval_every
    )
    for name, qat in (("PTQ", None), ("PTQ + QAT", distillation)):
        start = time.perf_counter()
        out = work / name.replace(" ", "").replace("+", "-").lower()
        try:
            artifact = mx.quantize_openvino(fp32.path, out, calibration=calib, qat=qat, overwrite=True)
        except ParityError as error:  # the recipe missed its drift limit: report what it reached
            failed[name] = (str(error).split(";")[0], time.perf_counter() - start)
            continue
        runs[name] = (artifact.record["quantization"], time.perf_counter() - start)
    cpu = cpu_info()
    first = next(iter(runs.values()))[0]
    cases = sorted(first["drift"]["agreement_by_case"])
    lines = [
        f"CPU: {cpu['model']} ({cpu['usable_cpus']} cores); LiteMedSAM real weights; calibration: {args.n} slices "
        f"of the bundled samples, validation cases held out whole: {', '.join(cases)}; target {first['target']}; "
        "default recipe (accuracy control included) before QAT.",
        "",
        "| recipe | quantize min | QAT steps | QAT min | QAT loss first -> last 10 | PTQ -> QAT (kept) | agreement | "
        + " | ".join(c.split("_", 2)[-1].removesuffix(".npz") for c in cases)
        + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(cases),
    ]
    for name, (q, seconds) in runs.items():
        qat = q.get("qat")
        steps = "- | - | - | -"
        if qat:
            loss = f"{qat['loss_first']:.5f} -> {qat['loss_last10']:.5f}" if qat["steps"] else "-"
            best = f"best of steps {', '.join(str(step) for step, _ in qat['scores'])}: {qat['best_step']}"
            kept = f"{qat['agreement_before']:.4f} -> {qat['agreement_after']:.4f} ({best}; {qat['kept']})"
            steps = f"{qat['steps']} | {qat['seconds'] / 60:.1f} | {loss} | {kept}"
        by_case = " | ".join(f"{q['drift']['agreement_by_case'][c]:.4f}" for c in cases)
        lines.append(f"| {name} | {seconds / 60:.1f} | {steps} | {q['drift']['agreement_dsc']:.4f} | {by_case} |")
    for name, (message, seconds) in failed.items():
        lines.append(f"| {name} | {seconds / 60:.1f} | nothing written: {message} |" + " |" * (4 + len(cases)))
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
