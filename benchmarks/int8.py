"""INT8 end to end per model: export OpenVINO FP32, calibrate, quantize (NNCF), verify both,
publish them in one bundle, check the bundle and gate it (without latency).

MedficientSAM L0/L1/L2 use the golden generator's deterministic weights: they show that
the pipeline runs end to end; their drift says little about trained weights (reported,
not tuned to). LiteMedSAM uses its real weights. Calibration: the bundled sample cases
(or --calib-data); verify: --data (default: the bundled samples). Writes a markdown table.

    python benchmarks/int8.py [--models l0,l1,l2,litemedsam] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from export import checkpoint_for

import msam_export as mx
from msam_export.errors import ParityError
from msam_export.quantize import Budget
from msam_export.system import cpu_info

SAMPLES = Path(__file__).resolve().parent.parent / "msam_export" / "samples"


def bins_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.bin")) / 1e6


def run_model(model: str, args: argparse.Namespace, work: Path) -> dict:
    ckpt = checkpoint_for(model, args.shared, work)
    fp32 = work / f"{model}-ov"
    mx.export_openvino(ckpt, fp32)
    title = mx.inspect_checkpoint(ckpt).model
    mx.calibrate(args.calib_data, work / f"{model}.calib.npz", model=ckpt, n=args.n, val_fraction=0.25)
    start = time.perf_counter()
    try:
        artifact = mx.quantize_openvino(
            fp32,
            work / f"{model}-int8",
            calibration=work / f"{model}.calib.npz",
            max_drift=args.max_drift,
            budget=Budget(args.budget),
        )
    except ParityError as exc:
        return {"model": title, "error": str(exc)}
    seconds = time.perf_counter() - start
    verify_files = [work / f"{model}-ov.verify.json", work / f"{model}-int8.verify.json"]
    mx.verify(fp32, args.data, reference=ckpt, output=verify_files[0], html=False)
    report = mx.verify(artifact.path, args.data, reference=ckpt, output=verify_files[1], html=False).report
    bundle = work / f"{model}-bundle"
    mx.publish([fp32, artifact.path], bundle, verify_files=verify_files, allow_failed=True, html=False)
    check = mx.check_bundle(bundle)
    verdict = mx.gate(bundle, latency=False)
    failed = verdict.failed
    meta = artifact.record
    q = meta["quantization"]
    return {
        "model": title,
        "quantize_s": seconds,
        "val_agreement": q["drift"]["agreement_dsc"],
        "float_ops": sum(q["float_scope"].values()),
        "kept_float": [k["module"] for k in q["accuracy_control"]["kept_float"]],
        "decoder": q["decoder"],
        "size_ratio": bins_mb(work / f"{model}-int8") / bins_mb(fp32),
        "overall": report["overall"],
        "by_modality": report["by_modality"],
        "bundle_ok": check.passed,
        "gate": "passed" if verdict.passed else "failed: " + "; ".join(f"{c.artifact} {c.name}" for c in failed),
    }


def table(rows: list[dict], data: Path) -> str:
    cpu = cpu_info()
    lines = [
        f"CPU: {cpu.get('model')} ({cpu.get('usable_cpus')} usable cpus); verify data: {data}",
        "",
        "| model | quantize s | float-scope ops | kept float by control | decoder | .bin vs FP32 | "
        "val agreement | agreement (verify) | worst modality | DSC FP32 -> INT8 | NSD FP32 -> INT8 | "
        "bundle check | gate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error']} |" + " |" * 11)
            continue
        o = r["overall"]
        worst = min(r["by_modality"].items(), key=lambda kv: kv[1]["agreement_dsc"])
        lines.append(
            f"| {r['model']} | {r['quantize_s']:.0f} | {r['float_ops']} | {', '.join(r['kept_float']) or '-'} | "
            f"{r['decoder']} | {r['size_ratio']:.0%} | {r['val_agreement']:.4f} | {o['agreement_dsc']:.4f} | "
            f"{worst[0]} {worst[1]['agreement_dsc']:.4f} | {o['reference_dsc']:.4f} -> {o['candidate_dsc']:.4f} | "
            f"{o['reference_nsd']:.4f} -> {o['candidate_nsd']:.4f} | "
            f"{'ok' if r['bundle_ok'] else 'FAILED'} | {r['gate']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="l0,l1,l2,litemedsam")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--data", type=Path, default=SAMPLES, help="verify data (imgs/ + gts/)")
    parser.add_argument("--calib-data", type=Path, default=SAMPLES)
    parser.add_argument("--n", type=int, default=40, help="calibration slices")
    parser.add_argument("--max-drift", type=float, default=0.5)
    parser.add_argument("--budget", type=int, default=0, help="modules accuracy control may keep in float")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8.md"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            rows.append(run_model(model, args, Path(tmp)))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "by_modality"}, default=str), flush=True)
    text = table(rows, args.data)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
