"""Accuracy of exported artifacts against PyTorch FP32 on challenge data.

Runs the PyTorch reference once per case and every candidate on the same cases;
prints (and writes) a per-modality markdown table: mask agreement DSC with the
reference, DSC/NSD against ground truth for reference and candidates.

    python benchmarks/accuracy.py --data ../shared/data --candidate onnx=DIR --candidate openvino=DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from msam_export.checkpoints import default_checkpoint_path
from msam_export.data import list_cases
from msam_export.runtime import Predictor, open_model
from msam_export.runtime.segment import data_dirs
from msam_export.verify.report import by_modality, summarize, verify_case
from msam_export.verify.system import cpu_info


class CachedPredictor(Predictor):
    """The reference runs once per case, whatever the number of candidates."""

    def __init__(self, backend, spec) -> None:
        super().__init__(backend, spec)
        self.cache: dict[str, object] = {}

    def segment(self, case):
        if case.name not in self.cache:
            self.cache[case.name] = super().segment(case)
        return self.cache[case.name]


def table(name: str, rows: list[dict]) -> str:
    lines = [
        f"### {name}",
        "",
        "| modality | cases | boxes | agreement DSC | DSC ref | DSC cand | NSD ref | NSD cand |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups = list(by_modality(rows).items()) + [("**overall**", summarize(rows))]
    for modality, s in groups:
        lines.append(
            f"| {modality} | {s['cases']} | {s['boxes']} | {s['agreement_dsc']:.4f} | {s['reference_dsc']:.3f} | "
            f"{s['candidate_dsc']:.3f} | {s['reference_nsd']:.3f} | {s['candidate_nsd']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--reference", type=Path, default=None, help="checkpoint [default: embedded LiteMedSAM]")
    parser.add_argument("--candidate", action="append", required=True, help="NAME=DIR")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.md"))
    args = parser.parse_args()
    imgs, gts = data_dirs(args.data)
    cases = list_cases(imgs)
    ref = open_model(args.reference or default_checkpoint_path())
    reference = CachedPredictor(ref.backend, ref.spec)
    sections, raw = [], {}
    for item in args.candidate:
        name, _, path = item.partition("=")
        cand = open_model(Path(path))
        predictor = Predictor(cand.backend, cand.spec)
        rows = []
        for path_ in cases:
            print(f"{name}: {path_.name}", file=sys.stderr, flush=True)
            rows.append(verify_case(path_, reference, predictor, gts, repeats=1))
        sections.append(table(name, rows))
        raw[name] = rows
    cpu = cpu_info()
    header = f"Reference: PyTorch FP32 eager ({ref.spec.title}); {len(cases)} cases from `{args.data}`; {cpu['model']}."
    text = "\n\n".join([header] + sections) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=float))


if __name__ == "__main__":
    main()
