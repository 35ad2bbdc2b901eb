"""Export time and artifact sizes per model (ONNX, then OpenVINO FP32 and FP16).

MedficientSAM L0/L1/L2 use the golden generator's deterministic weights (shared/golden);
LiteMedSAM its real weights. Writes a markdown table.

    python benchmarks/export.py [--models l0,l1,l2,litemedsam] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from msam_export.checkpoints import default_checkpoint_path
from msam_export.export import pipeline


def checkpoint_for(model: str, shared: Path, work: Path) -> Path:
    if model == "litemedsam":
        return default_checkpoint_path()
    sys.path.insert(0, str(shared / "golden"))
    import make_weights

    path = work / f"{model}.pt"
    torch.save(make_weights.make_state_dict(shared / "golden" / f"medficientsam_{model}.manifest.json"), path)
    return path


def size_mb(meta: dict) -> float:
    return sum(f["size_bytes"] for f in meta["files"].values()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="l0,l1,l2,litemedsam")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/export.md"))
    args = parser.parse_args()
    lines = [
        "| model | ONNX export s (trace / simplify / check / parity) | ONNX MB | OpenVINO FP32 s | IR FP32 MB | "
        "IR FP16 MB |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for model in args.models.split(","):
            ckpt = checkpoint_for(model, args.shared, work)
            start = time.perf_counter()
            onnx_meta = pipeline.export_onnx(ckpt, work / f"{model}-onnx").record
            onnx_s = time.perf_counter() - start
            start = time.perf_counter()
            ov_meta = pipeline.export_openvino(work / f"{model}-onnx", work / f"{model}-ov").record
            ov_s = time.perf_counter() - start
            fp16 = pipeline.export_openvino(work / f"{model}-onnx", work / f"{model}-fp16", weight_format="fp16").record
            t = onnx_meta["timings_s"]
            parts = " / ".join(f"{t.get(k, 0):.0f}" for k in ("trace", "simplify", "check", "parity"))
            lines.append(
                f"| {onnx_meta['model']['title']} | {onnx_s:.0f} ({parts}) | {size_mb(onnx_meta):.0f} | {ov_s:.0f} | "
                f"{size_mb(ov_meta):.0f} | {size_mb(fp16):.0f} |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
