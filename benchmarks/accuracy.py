"""Accuracy of exported artifacts against PyTorch FP32 on challenge data, and of PyTorch itself
against ground truth under each 3D rule.

Runs the PyTorch reference once per case and every candidate on the same cases (``verify``);
prints (and writes) per-modality markdown tables: agreement with the reference (3D propagated and
teacher-forced), DSC/NSD per label and challenge-style, for reference and candidates.

    python benchmarks/accuracy.py --data ../shared/data --candidate onnx=DIR --candidate openvino=DIR \
        [--rules spec,tight]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msam_export as mx
from msam_export.system import cpu_info

COLUMNS = (
    ("agreement_dsc", "agreement"),
    ("teacher_forced_agreement_dsc", "forced"),
    ("reference_dsc", "DSC ref"),
    ("candidate_dsc", "DSC cand"),
    ("reference_nsd", "NSD ref"),
    ("candidate_nsd", "NSD cand"),
    ("reference_challenge_dsc", "challenge DSC ref"),
    ("reference_challenge_nsd", "challenge NSD ref"),
)


def table(name: str, report: dict) -> str:
    lines = [
        f"### {name} (3D rule {report['propagation']})",
        "",
        "| group | cases | boxes | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    groups = [*report["by_modality"].items(), *report["by_dims"].items(), ("**overall**", report["overall"])]
    for group, s in groups:
        cells = " | ".join(f"{s[key]:.4f}" for key, _ in COLUMNS)
        lines.append(f"| {group} | {s['cases']} | {s['boxes']} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--reference", type=Path, default=None, help="checkpoint [default: embedded LiteMedSAM]")
    parser.add_argument("--candidate", action="append", required=True, help="NAME=DIR")
    parser.add_argument("--rules", default="spec", help="comma-separated 3D rules: spec, tight, margin:N")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.md"))
    args = parser.parse_args()
    reference = mx.open_model(args.reference or mx.default_checkpoint_path())
    sections, raw = [], {}
    for rule in args.rules.split(","):
        cache: dict = {}
        for item in args.candidate:
            name, _, path = item.partition("=")
            report = mx.verify(
                path,
                args.data,
                reference=reference,
                propagation=None if rule == "spec" else rule,
                html=False,
                reference_cache=cache,
            ).report
            sections.append(table(name, report))
            raw[f"{name}|{rule}"] = report
    cpu = cpu_info()
    header = (
        f"Reference: PyTorch FP32 eager ({reference.spec.title}); {len(report['cases'])} cases from `{args.data}`; "
        f"{cpu['model']} ({cpu['usable_cpus']} cores). DSC/NSD per label; challenge-style as compute_metrics.py."
    )
    text = "\n\n".join([header, *sections]) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=float))


if __name__ == "__main__":
    main()
