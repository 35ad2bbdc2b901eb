#!/usr/bin/env bash
# LiteMedSAM latency on a Xeon (AVX512-VNNI, AMX): PyTorch eager,
# ONNX Runtime FP32, OpenVINO FP32 / BF16 / INT8 / INT8 with BF16 elsewhere, at 2, 8 and 16
# threads; one benchmarks/latency.py table per thread count under $OUT. Environment:
# MODEL (zoo name, default litemedsam), THREADS ("2 8 16"), INT8_DIR (.xeon/ov-int8; empty:
# none), QAT_DIR (an INT8 export made with --qat; empty: none), REPEATS (5), PROFILE_THREADS
# (empty: no benchmarks/openvino_profile.py tables), NO_SIMPLIFY (set: export ONNX without
# onnxsim, when its wheel does not fit in the call), DATA (challenge npz inputs; set: the INT8
# artifact segments them at each thread count, segs in $OUT/segs-int8.tar.gz, to compare with
# FP32 outputs made elsewhere: benchmarks/compare_segs.py).
#
# Prepared here, in the ignored folder .xeon (carry it):
#   ../shared/tools/xeon_bundle.sh .xeon                 # OpenVINO for the device's Python 3.12
#   pip download onnxsim (cp312 wheel) into .xeon/whl    # the device has torch, onnx, onnxruntime
#   msam-export calibrate ../shared/data --default -o /tmp/calib.npz --n 100   # 86 MB: not in .xeon
#   msam-export openvino --default --int8 --calib /tmp/calib.npz -o .xeon/ov-int8
#   copy the shared cases not in msam_export/samples/imgs to .xeon/data-extra (5 MB); on the
#   device, put both in one folder and pass it as DATA
# A call carries at most 64 MiB: the tree (17 MiB) + .xeon (OpenVINO 21, INT8 IR 17, and either
# the onnxsim wheel, 9, or the extra cases with NO_SIMPLIFY=1).
# The device has no NNCF, so the INT8 IR (real weights) is made here. The FP32 graphs are
# exported there, with the project's own code, from LiteMedSAM's architecture with seeded
# random weights: the real checkpoint does not fit in the 64 MB a call may carry, and dense
# FP32/BF16 kernels take the same time whatever the weight values.
set -euo pipefail
out=${OUT:-/tmp/xeon-out}
work=$(mktemp -d)
mkdir -p "$out" "$work/site"
if ! python3 -c "import openvino" 2>/dev/null; then  # the device: bring it (a dry run here has it)
  tar -xJf .xeon/openvino_site.tar.xz -C "$work/site"
  if compgen -G ".xeon/whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" .xeon/whl/*.whl
  fi
fi
export PYTHONPATH="$work/site:$PWD" PYTHONUNBUFFERED=1
msam() { python3 -m msam_export "$@"; }
lscpu > "$out/lscpu.txt"
python3 -c "
import openvino as ov, torch; c = ov.Core()
print('openvino', ov.__version__, 'torch', torch.__version__)
print('CPU capabilities:', c.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))"
model=${MODEL:-litemedsam}
int8=${INT8_DIR-.xeon/ov-int8}
python3 -c "
import torch; from msam_export.zoo import get_spec
torch.manual_seed(0); torch.save(get_spec('$model').build().state_dict(), '$work/$model-random.pt')"
msam onnx "$work/$model-random.pt" -o "$work/onnx" -q ${NO_SIMPLIFY:+--no-simplify}
msam openvino "$work/onnx" -o "$work/ov" -q
for threads in ${THREADS-2 8 16}; do
  python3 benchmarks/latency.py --checkpoint "$work/$model-random.pt" --onnx "$work/onnx" --openvino "$work/ov" \
    ${int8:+--openvino-int8 "$int8"} ${QAT_DIR:+--openvino-int8-qat "$QAT_DIR"} --threads "$threads" --repeats "${REPEATS:-5}" \
    --out "$out/latency-xeon-$model-t$threads.md"
done
if [ -n "${PROFILE_THREADS:-}" ]; then
  python3 benchmarks/openvino_profile.py "$work/ov" ${int8:+"$int8"} --threads $PROFILE_THREADS \
    --precision f32 bf16 | tee "$out/profile-xeon-$model.md"
fi
if [ -n "${DATA:-}" ] && [ -n "$int8" ]; then
  for threads in ${THREADS-2 8 16}; do
    msam segment "$int8" "$DATA" "$work/segs/int8-t$threads" --threads "$threads" --no-cache
  done
  tar -czf "$out/segs-int8.tar.gz" -C "$work/segs" .
fi
