"""Agreement between two folders of challenge ``segs`` outputs, per modality.

For results made elsewhere (a Xeon's BF16 runs, say) and copied back: per label,
the Dice between the candidate's and the reference's masks (two empty masks agree), and,
with ``--gts``, DSC and NSD against ground truth for both. Labels stand for boxes in
challenge data, but where boxes overlap a label map keeps only the last box's pixels, so
this agreement can differ slightly from ``msam-export verify``'s per-box agreement.

    python benchmarks/compare_segs.py REF_DIR CAND_DIR --gts GTS_DIR [--out table.md]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from msam_export.data import load_ground_truth, modality_of
from msam_export.metrics import agreement_dice, case_scores


def label_agreements(reference: np.ndarray, candidate: np.ndarray) -> list[float]:
    """Agreement DSC of every label present in either map."""
    labels = np.union1d(np.unique(reference), np.unique(candidate))
    return [agreement_dice(reference == k, candidate == k) for k in labels if k != 0]


def compare_case(ref_path: Path, cand_path: Path, gts_dir: Path | None) -> dict:
    reference, candidate = np.load(ref_path)["segs"], np.load(cand_path)["segs"]
    row = {
        "case": ref_path.name,
        "modality": modality_of(ref_path.name),
        "agreement": label_agreements(reference, candidate),
    }
    gt_path = gts_dir / ref_path.name if gts_dir else None
    if gt_path is not None and gt_path.is_file():
        gts, spacing = load_ground_truth(gt_path)
        row["reference"] = case_scores(reference, gts, spacing)
        row["candidate"] = case_scores(candidate, gts, spacing)
    return row


def summary_lines(rows: list[dict]) -> list[str]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["modality"]].append(row)
    groups["overall"] = rows
    lines = [
        "| modality | cases | labels | agreement | worst label | DSC ref | DSC cand | NSD ref | NSD cand |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, group in groups.items():
        agreements = [a for row in group for a in row["agreement"]]
        scored = [row for row in group if "reference" in row]

        def mean(side: str, key: str, scored: list[dict] = scored) -> str:
            values = [row[side][key] for row in scored if not np.isnan(row[side][key])]
            return f"{np.mean(values):.4f}" if values else "-"

        lines.append(
            f"| {name} | {len(group)} | {len(agreements)} | {np.mean(agreements):.4f} | {min(agreements):.4f} | "
            f"{mean('reference', 'dsc')} | {mean('candidate', 'dsc')} | {mean('reference', 'nsd')} | "
            f"{mean('candidate', 'nsd')} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--gts", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    names = sorted(p.name for p in args.reference.glob("*.npz"))
    missing = [n for n in names if not (args.candidate / n).is_file()]
    if missing:
        raise SystemExit(f"{args.candidate}: no output for {', '.join(missing)}")
    rows = [compare_case(args.reference / n, args.candidate / n, args.gts) for n in names]
    text = "\n".join(summary_lines(rows)) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
