#!/usr/bin/env bash
# GPU check of the export stage: install what is missing, export fp32/fp16/int8 with TensorRT,
# run the export tests (GPU ones included) and time torch / ONNX Runtime / TensorRT.
#
#   bash benchmarks/gpu_check.sh [WORKDIR]     (run from the repository root, on a machine with a GPU)
#
# Step 7 repeats the export and timing for a CNN (ResNet-50 at 112 px).
# Nothing here was run in the session that wrote it (no GPU machine): see docs/benchmarks/gpu.md.
set -euo pipefail

WORK=${1:-${TMPDIR:-/tmp}/facesdk-gpu-check}
PY=${PYTHON:-python}
mkdir -p "$WORK"
echo "## facesdk GPU check ($(date -u +%FT%TZ))"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader || {
  echo "no NVIDIA GPU visible (nvidia-smi failed)"; exit 1; }

# 1. Install what is missing (pip wheels only; pycuda is not used: it has no wheels).
need=()
$PY -c "import tensorrt" 2>/dev/null || need+=(tensorrt)
$PY -c "import cuda.bindings.runtime" 2>/dev/null || need+=("cuda-python>=12")
$PY -c "import polygraphy" 2>/dev/null || need+=(polygraphy)
$PY -c "import facesdk.export" 2>/dev/null || need+=(-e ".[dev]")
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  $PY -m pip install "${need[@]}"
fi
$PY -c "import tensorrt, torch; print('TensorRT', tensorrt.__version__, '| torch', torch.__version__, '| CUDA', torch.cuda.is_available())"

# 2. A checkpoint: the training smoke run if the training CLI has one, else a tiny random DoRA one.
CKPT="$WORK/checkpoint"
if [[ ! -f "$CKPT/checkpoint.json" ]]; then
  $PY - "$CKPT" <<'PY'
import sys, torch
from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
from facesdk.tasks import DEFAULT_TASKS
from facesdk.training import build_model, save_checkpoint
backbone = BackboneSpec("vit_pe_core_tiny_patch16_384", "random", {})
heads = {t.name: HeadSpec() for t in DEFAULT_TASKS}
model, pre, spec = build_model(backbone, DEFAULT_TASKS, heads, MethodSpec("dora", {"rank": 8}))
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.02)
save_checkpoint(model, sys.argv[1], backbone=backbone, preprocess=pre, tasks=DEFAULT_TASKS, method=spec, heads=heads)
print("random DoRA checkpoint at", sys.argv[1])
PY
fi

# 3. A calibration set for int8 ('facesdk calibrate collect' of the calibration stage) from
#    scikit-image's lfw_subset face crops, with the preprocessing of a quick fp32 export.
PRECISION=fp32,fp16
CALIB="$WORK/calib"
if $PY -c "import facesdk.calibration.cli, skimage" 2>/dev/null; then
  if [[ ! -f "$CALIB/calib.json" ]]; then
    facesdk export build --ckpt "$CKPT" --out "$WORK/export-fp32" --precision fp32 --force
    $PY - "$WORK/lfw" <<'PY'
import sys, pathlib, cv2, numpy as np
from skimage import data
out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
for i, face in enumerate(data.lfw_subset()):
    cv2.imwrite(str(out / f"{i:03d}.png"), (face * 255 + 0.5).astype(np.uint8))
PY
    facesdk calibrate collect --crops "$WORK/lfw" --model "$WORK/export-fp32" --out "$CALIB" --count 192 \
      || echo "calibration set: collect failed (see above); int8 skipped"
  fi
  [[ -f "$CALIB/calib.json" ]] && PRECISION=fp32,fp16,int8
else
  echo "facesdk.calibration.cli or scikit-image is not installed: int8 skipped"
fi

# 4. Export with engines (parity checks run inside: merge, ONNX vs torch, engine vs ONNX Runtime).
EXPORT="$WORK/export"
# A random-weight checkpoint will not reach the quantizer's agreement threshold: record, don't enforce.
CALIB_ARG=()
[[ $PRECISION == *int8* ]] && CALIB_ARG=(--calib "$CALIB" --int8-option accept_drop=true)
facesdk export build --ckpt "$CKPT" --out "$EXPORT" --precision "$PRECISION" --max-batch 32 \
  --timing-cache "$WORK/timing.cache" --force "${CALIB_ARG[@]}"
$PY - "$EXPORT" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/export.json"))
print("\n### Parity\n")
for key, value in m["parity"].items():
    print(f"- {key}: {json.dumps(value)[:400]}")
for key, entry in m["models"].items():
    if entry.get("tensorrt"):
        print(f"- {key}: {entry['tensorrt']}")
c = m["complexity"]
print(f"\nGFLOPs merged {c['merged']['gflops']:.3f}, unmerged {c['unmerged']['gflops']:.3f}, ONNX GMACs {c['onnx']['gmacs']:.3f}")
PY

# 5. The export tests, GPU ones included.
$PY -m pytest tests/export tests/training/test_cnn_backbones.py::test_tensorrt_engines_of_a_cnn -q -rs

# 6. Timing table (batch 1 and 32).
echo -e "\n### Latency (median ms)\n"
$PY -m benchmarks.gpu_timing --export "$EXPORT" --ckpt "$CKPT" --batches 1,32

# 7. The CNN path: a random-init ResNet-50 at 112 px (BatchNorm folded into its convolutions),
#    fp32/fp16/int8 engines from the same export command, then the same timing table.
CNN_CKPT="$WORK/checkpoint-resnet50"
if [[ ! -f "$CNN_CKPT/checkpoint.json" ]]; then
  $PY - "$CNN_CKPT" <<'PY'
import sys, torch
from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
from facesdk.tasks import DEFAULT_TASKS
from facesdk.training import build_model, save_checkpoint
from facesdk.training.backbones import estimate_batchnorm_stats
backbone = BackboneSpec("resnet50", "random", {"pretrained_cfg_overlay": {"input_size": [3, 112, 112]}})
heads = {t.name: HeadSpec() for t in DEFAULT_TASKS}
model, pre, spec = build_model(backbone, DEFAULT_TASKS, heads, MethodSpec("lora", {"rank": 8}))
torch.manual_seed(0)
estimate_batchnorm_stats(model, [torch.randn(64, 3, 112, 112)])  # random init: 0/1 statistics otherwise
save_checkpoint(model, sys.argv[1], backbone=backbone, preprocess=pre, tasks=DEFAULT_TASKS, method=spec, heads=heads)
print("random ResNet-50 LoRA checkpoint at", sys.argv[1])
PY
fi
CNN_PRECISION=fp32,fp16
CNN_CALIB_ARG=()
if [[ -f "$CALIB/calib.json" ]]; then
  facesdk export build --ckpt "$CNN_CKPT" --out "$WORK/export-resnet50-fp32" --precision fp32 --onnx-only --force
  facesdk calibrate collect --crops "$WORK/lfw" --model "$WORK/export-resnet50-fp32" --out "$WORK/calib-resnet50" \
    --count 192 && CNN_PRECISION=fp32,fp16,int8 \
    && CNN_CALIB_ARG=(--calib "$WORK/calib-resnet50" --int8-option accept_drop=true)
fi
echo -e "\n### ResNet-50 (112 px): engines and parity\n"
facesdk export build --ckpt "$CNN_CKPT" --out "$WORK/export-resnet50" --precision "$CNN_PRECISION" --max-batch 32 \
  --timing-cache "$WORK/timing.cache" --force "${CNN_CALIB_ARG[@]}"
$PY -c "import json,sys; m=json.load(open(sys.argv[1])); [print('-', k, json.dumps(v)[:300]) for k, v in m['parity'].items()]" \
  "$WORK/export-resnet50/export.json"
echo -e "\n### ResNet-50 (112 px): latency (median ms)\n"
$PY -m benchmarks.gpu_timing --export "$WORK/export-resnet50" --ckpt "$CNN_CKPT" --batches 1,32
