"""How much image-embedding error each modality tolerates, and how INT8's error compares.

For an FP32 OpenVINO export and a calibration file (`msam-export calibrate`), the PyTorch FP32
embeddings of the validation slices get isotropic Gaussian noise of relative L2 size ``eps``
and are decoded by the FP32 decoder; the table gives the drift metric (mean mask agreement DSC
with FP32 over the validation cases, 3D propagated, as accuracy control measures it) per
modality. ``--int8`` adds the rows of INT8 artifacts' encoders, at their own embedding error,
so that structured quantization error can be told from noise of the same size.

    python benchmarks/embedding_noise.py FP32_DIR calib.npz [--eps 0.01,0.03,0.1] [--int8 DIR ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import openvino as ov

from msam_export.calibrate import load_calibration
from msam_export.quantize.openvino import compiler
from msam_export.quantize.validation import DriftMeter, image_key
from msam_export.zoo import get_spec


class NoisyEmbeddings:
    """An encoder backend: the FP32 embedding (cached, else from ``encoder``) plus isotropic
    Gaussian noise of relative L2 size ``eps``; the noise is deterministic for a seed."""

    name, precision = "noisy", "f32"

    def __init__(self, known: dict[str, np.ndarray], encoder, eps: float, seed: int = 0) -> None:
        self.known, self.encoder, self.eps = known, encoder, eps
        self.rng = np.random.default_rng(seed)

    def encode(self, image: np.ndarray) -> np.ndarray:
        clean = self.known.get(image_key(image))
        if clean is None:
            clean = self.encoder.encode(image)
        noise = self.rng.standard_normal(clean.shape).astype(np.float32)
        return clean + self.eps * float(np.linalg.norm(clean)) / float(np.linalg.norm(noise)) * noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fp32", type=Path, help="FP32 OpenVINO export dir (encoder.xml, decoder.xml)")
    parser.add_argument("calib", type=Path)
    parser.add_argument("--eps", default="0.001,0.01,0.03,0.1", help="relative noise sizes, comma-separated")
    parser.add_argument("--int8", type=Path, nargs="*", default=[], help="INT8 OpenVINO artifact dirs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    calib = load_calibration(args.calib)
    spec = get_spec(calib.model)
    compile_models = compiler(None)
    core = ov.Core()
    meter = DriftMeter(calib, compile_models(None, core.read_model(args.fp32 / "decoder.xml")), spec)
    fp32_encoder = compile_models(core.read_model(args.fp32 / "encoder.xml"))
    known = {image_key(image): embedding for image, _, embedding in meter.items}
    candidates = [
        (f"noise {eps}", NoisyEmbeddings(known, fp32_encoder, float(eps), args.seed)) for eps in args.eps.split(",")
    ]
    candidates += [(f"INT8 {d.name}", compile_models(core.read_model(d / "encoder.xml"))) for d in args.int8]
    rows = [(label, meter.measure(encoder)) for label, encoder in candidates]
    modalities = sorted(rows[0][1].per_modality)
    print(f"{len(set(meter.cases))} validation cases, {len(meter)} slices of {args.calib.name}\n")
    print("| encoder | embedding error | agreement | " + " | ".join(modalities) + " |")
    print("|---|---|---|" + "---|" * len(modalities))
    for label, drift in rows:
        cells = " | ".join(f"{drift.per_modality[m]:.4f}" for m in modalities)
        print(f"| {label} | {drift.embedding_error:.4f} | {drift.agreement:.4f} | {cells} |")


if __name__ == "__main__":
    main()
