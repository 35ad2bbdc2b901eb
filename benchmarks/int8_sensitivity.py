"""Where INT8 error comes from: weight-only INT8 per module, and NNCF recipe variants.

For an FP32 OpenVINO export and a calibration file (`msam-export calibrate`), prints the
mean mask agreement DSC with FP32 and the image-embedding error on the file's validation
slices for:
- ``weights``: INT8 weights (``nncf.compress_weights`` INT8_ASYM, activations float) in
  the whole encoder, then in one module at a time (the rest float);
- ``recipes``: the package's recipe (float scope, PERFORMANCE preset, overflow fix, GPTQ rounding)
  and variants of it (nearest weight rounding, activation range estimators, bias correction,
  MIXED preset, attention inputs in float), and the recipe with its float constants stored as
  fp16, as the artifact saves them.

    python benchmarks/int8_sensitivity.py FP32_DIR calib.npz [--what weights,recipes]
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

import nncf
import openvino as ov
from nncf.quantization.range_estimator import RangeEstimatorParametersSet

from msam_export.calibrate import load_calibration
from msam_export.quantize.graph import module_path, store_constants_as_fp16
from msam_export.quantize.openvino import compiler, float_scope, quantize_encoder, resolve_target
from msam_export.quantize.validation import DriftMeter
from msam_export.zoo import get_spec

WEIGHT_OPS = ("MatMul", "Convolution", "GroupConvolution")
ATTENTION_OPS = ("ScaledDotProductAttention",)  # OpenVINO fuses q @ k^T, softmax and @ v into one
BLOCK = re.compile(r"(patch_embed|neck|layers\.\d+/(blocks\.\d+|downsample)|backbone/stages\.\d+/op_list\.\d+)")


def blocks(model: Any) -> dict[str, list[str]]:
    """Weighted operations per block (a TinyViT/EfficientViT block, a stem, a neck)."""
    out: dict[str, list[str]] = {}
    for op in model.get_ops():
        if op.get_type_name() in WEIGHT_OPS:
            path = module_path(op, depth=10).strip("/")
            match = BLOCK.match(path)
            out.setdefault(match.group(1) if match else path, []).append(op.get_friendly_name())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fp32", type=Path, help="FP32 OpenVINO export dir (encoder.xml, decoder.xml)")
    parser.add_argument("calib", type=Path)
    parser.add_argument("--what", default="weights,recipes")
    parser.add_argument("--target", default="auto")
    args = parser.parse_args()
    nncf.set_log_level(logging.WARNING)
    calib = load_calibration(args.calib)
    spec = get_spec(calib.model)
    target = resolve_target(args.target)
    core = ov.Core()
    compile_models = compiler(None)
    meter = DriftMeter(calib, compile_models(None, core.read_model(args.fp32 / "decoder.xml")), spec)

    def compile_encoder(model: Any) -> Any:
        return compile_models(model)

    def fresh() -> Any:
        return core.read_model(args.fp32 / "encoder.xml")

    def report(label: str, model: Any) -> None:
        drift = meter.measure(compile_encoder(model))
        worst = min(drift.per_modality.items(), key=lambda kv: kv[1])
        print(
            f"| {label} | {drift.agreement:.4f} | {drift.slice_agreement:.4f} | {drift.embedding_error:.4f} | "
            f"{worst[0]} {worst[1]:.4f} |",
            flush=True,
        )

    print(f"{len(set(meter.cases))} validation cases, {len(meter)} slices of {args.calib.name}, target {target}\n")
    print("| encoder | agreement (cases) | per slice | embedding error | worst modality |\n|---|---|---|---|---|")
    if "weights" in args.what:
        int8_weights = nncf.CompressWeightsMode.INT8_ASYM
        report("INT8 weights everywhere", nncf.compress_weights(fresh(), mode=int8_weights))
        parts = blocks(fresh())
        for block in parts:
            others = [n for b, ns in parts.items() if b != block for n in ns]
            scope = nncf.IgnoredScope(names=others, validate=False)
            compressed = nncf.compress_weights(fresh(), mode=int8_weights, ignored_scope=scope)
            report(f"INT8 weights in {block} only", compressed)
    if "recipes" in args.what:
        variants = {
            "recipe (min-max ranges, GPTQ weight rounding)": {},
            "recipe, nearest weight rounding (NNCF's)": {"weight_rounding": "nearest"},
            "recipe, MEAN_NO_OUTLIERS_MINMAX ranges": {
                "activations_range_estimator_params": RangeEstimatorParametersSet.MEAN_NO_OUTLIERS_MINMAX
            },
            "recipe, MEAN_QUANTILE ranges": {
                "activations_range_estimator_params": RangeEstimatorParametersSet.MEAN_QUANTILE
            },
            "recipe, HISTOGRAM ranges": {"activations_range_estimator_params": RangeEstimatorParametersSet.HISTOGRAM},
            "recipe, fast bias correction": {"disable_bias_correction": False},
            "recipe, MIXED preset": {"preset": nncf.QuantizationPreset.MIXED},
        }
        ignored = [name for names in float_scope(fresh(), spec).values() for name in names]
        for label, changes in variants.items():
            report(label, quantize_encoder(fresh(), calib, ignored, target, **changes)[0])
        attention = [op.get_friendly_name() for op in fresh().get_ops() if op.get_type_name() in ATTENTION_OPS]
        report(
            "recipe, attention (SDPA) inputs float", quantize_encoder(fresh(), calib, ignored + attention, target)[0]
        )
        half, _ = quantize_encoder(fresh(), calib, ignored, target)
        store_constants_as_fp16(half)
        report("recipe, float constants stored as fp16 (as saved)", half)


if __name__ == "__main__":
    main()
