#!/usr/bin/env bash
# One command on a fresh machine, offline: install, train the smoke model on synthetic faces,
# collect an INT8 calibration set from real photos, export ONNX (FP32 + INT8), analyse a real
# photo and a short video, and print the bench table. Outputs land in runs/quickstart/.
#
# The smoke model is a tiny random-init ViT trained for ~2 minutes on SYNTHETIC images:
# its predictions on real faces are meaningless. See docs/training.md for real models.
set -euo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-runs/quickstart}
VENV=${FACESDK_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt -e ".[dev]"

# The face detector (YuNet) ships inside the package, so nothing is downloaded; a copy fetched into
# the model store ($FACESDK_HOME/models, then ~/.cache/facesdk/models) would be used first.
facesdk models path

mkdir -p "$OUT/media"
python - "$OUT/media" <<'PY'
import sys
from pathlib import Path

import cv2
import numpy as np
from skimage import data

out = Path(sys.argv[1])
photo = np.ascontiguousarray(data.astronaut()[..., ::-1])
cv2.imwrite(str(out / "astronaut.png"), photo)
faces = out / "lfw"
faces.mkdir(exist_ok=True)
for i, crop in enumerate(data.lfw_subset()[:100]):
    cv2.imwrite(str(faces / f"face_{i:03d}.png"), (crop * 255).astype(np.uint8))
writer = cv2.VideoWriter(str(out / "astronaut.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 15, photo.shape[1::-1])
for shift in range(45):  # a slow pan, so the tracker has something to follow
    writer.write(np.roll(photo, shift * 2, axis=1))
writer.release()
PY

if [ ! -f "$OUT/train/checkpoint/checkpoint.json" ]; then
  facesdk train --config configs/smoke_dora.yaml --out "$OUT/train"
fi
# INT8 calibration crops, cut by the SDK's own detector and alignment (lfw crops are too small
# for the detector and are used whole).
facesdk calibrate collect --source "$OUT/media/astronaut.png" "$OUT/media/astronaut.avi" \
  --crops "$OUT/media/lfw" --preprocess "$OUT/train/checkpoint/checkpoint.json" --out "$OUT/calib" --count 256
# --onnx-only: FP32 and INT8 ONNX models; TensorRT engines need a GPU (benchmarks/gpu_check.sh).
# The INT8 gate decides on the Wilson 95% lower bound of the top-1 agreement with FP32. Its
# default 0.98 needs >= 189 held-out crops (half the set is held out); these 256 crops hold out
# 128, so the smoke flow asks for 0.95 (128 of 128 agreeing give 0.971). On this 2-block smoke
# model quantizing the attention output projections costs one crop in 36, and the gate's
# sensitivity pass names them, so they stay float here (docs/int8.md).
facesdk export build --ckpt "$OUT/train/checkpoint" --out "$OUT/export" --precision fp32,int8 \
  --calib "$OUT/calib" --onnx-only --force --int8-option 'also_keep_float=["*/proj/*"]' \
  --int8-option threshold=0.95
facesdk analyze "$OUT/media/astronaut.png" "$OUT/media/astronaut.avi" --model "$OUT/export" --json "$OUT/analysis.jsonl" --force
facesdk bench --ckpt "$OUT/train/checkpoint" --model "$OUT/export" --video "$OUT/media/astronaut.avi" --out "$OUT/bench"
echo
echo "Done. Outputs in $OUT/: checkpoint, export (model.onnx, model.int8.onnx, export.json), analysis.jsonl, bench/."
echo "Reminder: the smoke model was trained on synthetic images; its predictions on real faces are meaningless."
