"""Agreement of the export's lower-precision models with FP32, measured on face crops.

One number per question: INT8 parity is the calibration gate's own figure on its held-out
crops (:func:`gate_parity`); FP16 parity runs :func:`facesdk.bench.compare_outputs` on face
crops: the calibration set when the export has one, otherwise scikit-image's ``lfw_subset``
faces resized through the model's own preprocessing. Every record names its crops and counts
them, and carries each task's Wilson 95% lower bound.

The OpenVINO paths ``backend="auto"`` may choose (BF16, INT8) are checked by
:mod:`facesdk.export.cpu_paths` on the checkpoint's validation crops (:data:`VALIDATION_CROPS`,
:func:`load_validation_crops`) or the calibration set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesdk.backends.onnxruntime import OnnxFileBackend
from facesdk.bench import compare_outputs, wilson_lower_bound
from facesdk.contract.checkpoint import CheckpointManifest
from facesdk.errors import DependencyError, ManifestError
from facesdk.preprocess import Preprocess, to_input_tensor

__all__ = [
    "LFW_FACES",
    "MAX_PARITY_CROPS",
    "VALIDATION_CROPS",
    "face_crops",
    "gate_parity",
    "lfw_crops",
    "load_validation_crops",
    "onnx_agreement",
]

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MAX_PARITY_CROPS = 512
"""At most this many crops of a calibration set are compared (all 100 lfw_subset faces otherwise)."""


LFW_FACES = 100
"""``skimage.data.lfw_subset()`` holds 100 face crops, then 100 non-face patches."""


def lfw_crops(preprocess: Preprocess) -> np.ndarray:
    """scikit-image's 100 ``lfw_subset`` faces (25 x 25 grey) through the model's preprocessing."""
    try:
        from skimage import data
    except ImportError as exc:
        raise DependencyError(
            f"FP16 parity on face crops needs scikit-image without --calib ({exc}); pip install 'facesdk[export]'"
        ) from exc
    faces = (np.asarray(data.lfw_subset()[:LFW_FACES]) * 255 + 0.5).clip(0, 255).astype(np.uint8)
    return to_input_tensor([np.repeat(face[:, :, None], 3, axis=2) for face in faces], preprocess)


def face_crops(preprocess: Preprocess, calib: str | os.PathLike[str] | None) -> tuple[np.ndarray, str]:
    """The crops FP16 parity runs on and what they are.

    Args:
        preprocess: The model's preprocessing (the calibration set's fingerprint must match it).
        calib: A calibration set directory, or ``None`` for scikit-image's faces.
    """
    if calib is not None:
        from facesdk.calibration.calibset import check_fingerprint, load_calibration_set

        calib_set = load_calibration_set(calib)
        check_fingerprint(calib_set, preprocess, calib)
        crops, _ = calib_set.arrays(calib)
        if len(crops):
            picked = np.sort(np.random.default_rng(0).permutation(len(crops))[:MAX_PARITY_CROPS])
            return crops[picked], f"calibration set {Path(calib).name} ({len(picked)} of {len(crops)} crops)"
    return lfw_crops(
        preprocess
    ), f"scikit-image lfw_subset faces ({LFW_FACES}) through the model's preprocessing"


def onnx_agreement(
    reference: Path,
    candidate: Path,
    names: Sequence[str],
    crops: np.ndarray,
    description: str,
    batch: int = 32,
) -> dict[str, Any]:
    """Per-task agreement of two ONNX models on ``crops`` (SDK ONNX Runtime sessions, CPU)."""
    with (
        OnnxFileBackend(reference, names, max_batch=batch) as ref,
        OnnxFileBackend(candidate, names, max_batch=batch) as got,
    ):
        comparison = compare_outputs(ref, got, crops, names, description)
    record = comparison.to_json()
    record["reference"] = "onnxruntime fp32 (CPU)"
    log.info("%s vs fp32 on %d crops: %s", candidate.name, comparison.crops,
             {t: round(a.rate, 4) for t, a in comparison.tasks.items()})  # fmt: skip
    return record


def gate_parity(report: Mapping[str, Any]) -> dict[str, Any]:
    """INT8 parity as the calibration gate measured it (its held-out crops, its counts and bounds)."""
    agreement = dict(report.get("agreement") or {})
    crops = int(report.get("held_out") or 0)
    agree = dict(report.get("agree") or {})
    tasks = {}
    for task, rate in agreement.items():
        k = int(agree.get(task, round(float(rate) * crops)))
        tasks[task] = {
            "top1_agreement": float(rate),
            "agree": k,
            "crops": crops,
            "wilson_lower_95": wilson_lower_bound(k, crops) if crops else None,
            "max_abs_diff": (report.get("max_abs_diff") or {}).get(task),
            "relative_logit_error": (report.get("relative_logit_error") or {}).get(task),
        }
    return {
        "inputs": "held-out calibration crops (the INT8 gate's own figures)",
        "reference": "onnxruntime fp32 (CPU)",
        "crops": crops,
        "confidence": "Wilson score interval, 95%, lower end",
        "tasks": tasks,
        "calibration_report": dict(report),
    }


# --------------------------------------------------------------------- OpenVINO BF16 at export
VALIDATION_CROPS = "validation_crops.safetensors"
"""Optional file in a checkpoint dir: tensor ``input`` (N x 3 x H x W, preprocessed crops)."""


def load_validation_crops(ckpt: Path, manifest: CheckpointManifest) -> torch.Tensor | None:
    """The checkpoint's validation crops, if it ships them (see :data:`VALIDATION_CROPS`)."""
    name = str(manifest.training.get("validation_crops", VALIDATION_CROPS))
    path = ckpt / name
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    crops = load_file(str(path)).get("input")
    if crops is None or crops.ndim != 4 or tuple(crops.shape[2:]) != tuple(manifest.preprocess.input_size):
        raise ManifestError(f"{path} must hold a tensor 'input' of N x 3 x {manifest.preprocess.input_size}")
    return crops.float()
