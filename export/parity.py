"""Agreement of the export's lower-precision models with FP32, measured on face crops.

One number per question: INT8 parity is the calibration gate's own figure on its held-out
crops (:func:`gate_parity`); FP16 parity runs :func:`facesdk.bench.compare_outputs` on face
crops: the calibration set when the export has one, otherwise scikit-image's ``lfw_subset``
faces resized through the model's own preprocessing. Every record names its crops and counts
them, and carries each task's Wilson 95% lower bound.

OpenVINO's BF16 mode is checked here too (:func:`bf16_agreement`). BF16 is an execution mode of
``model.onnx``, not a file. ``backend="auto"`` may choose it only where its top-1 agreement with FP32
was checked on face crops (``facesdk.backends.select``). When the exporting CPU has AVX-512 BF16 or
AMX and OpenVINO is installed, the export measures it on the checkpoint's validation crops
(:data:`VALIDATION_CROPS`) or, failing those, the calibration set, and records it as the optional
field ``models["onnx-fp32"].extra["openvino_bf16"]`` of ``export.json``. Otherwise nothing is
recorded and ``auto`` measures it at first use on a BF16 CPU.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesdk.backends import create_backend, run_batched
from facesdk.backends.onnxruntime import OnnxFileBackend
from facesdk.backends.select import THRESHOLD, cpu_signature
from facesdk.bench import compare_outputs, wilson_lower_bound
from facesdk.checkpoint import CheckpointManifest, load_checkpoint_manifest
from facesdk.errors import DependencyError, ManifestError
from facesdk.export_manifest import ExportManifest
from facesdk.preprocess import Preprocess, to_input_tensor

__all__ = [
    "LFW_FACES",
    "MAX_PARITY_CROPS",
    "VALIDATION_CROPS",
    "bf16_agreement",
    "export_face_crops",
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


MAX_BF16_CROPS = 256
"""At most this many crops go through OpenVINO BF16 and ONNX Runtime FP32 at export."""


def export_face_crops(ckpt: Path, calib: Path | None) -> tuple[np.ndarray, str] | None:
    """The checkpoint's validation crops, else the calibration set's crops, else None."""
    crops = load_validation_crops(ckpt, load_checkpoint_manifest(ckpt))
    if crops is not None:
        return crops.numpy()[:MAX_BF16_CROPS].astype(np.float32), "checkpoint validation crops"
    if calib is not None:
        try:
            calibset = importlib.import_module("facesdk.calibration.calibset")
        except ImportError:
            return None
        arrays, _ = calibset.load_calibration_set(calib).arrays(calib)
        if len(arrays):
            return np.ascontiguousarray(
                arrays[:MAX_BF16_CROPS], dtype=np.float32
            ), f"calibration set {calib.name}"
    return None


def bf16_agreement(
    onnx_path: Path, manifest: ExportManifest, ckpt: Path, calib: Path | None
) -> dict[str, Any] | None:
    """Top-1 agreement per task of OpenVINO BF16 with ONNX Runtime FP32, or None where not measurable.

    Args:
        onnx_path: The exported ``model.onnx``.
        manifest: The export's manifest (input and output names).
        ckpt: The checkpoint directory (its validation crops are the first choice of crops).
        calib: The calibration set directory, if the export has one.
    """
    cpu = cpu_signature()
    if cpu["runtimes"].get("openvino") is None or not {"avx512_bf16", "amx_bf16"} & set(cpu["flags"]):
        log.info("no BF16 agreement at export: needs OpenVINO and a CPU with AVX-512 BF16 or AMX")
        return None
    crops = export_face_crops(ckpt, calib)
    if crops is None:
        log.info("no BF16 agreement at export: no face crops (validation crops or --calib); auto measures it")
        return None
    x, source = crops
    with create_backend("onnxruntime", manifest, onnx_path) as ref:  # type: ignore[attr-defined]
        want = run_batched(ref, x)
    with create_backend("openvino", manifest, onnx_path, precision_hint="bf16") as bf16:  # type: ignore[attr-defined]
        got = run_batched(bf16, x)
    agreement = {t: float((want[t].argmax(1) == got[t].argmax(1)).mean()) for t in want}
    record = {
        "agreement": agreement,
        "samples": len(x),
        "crops": source,
        "cpu": cpu["model"],
        "openvino": cpu["runtimes"]["openvino"],
        "threshold": THRESHOLD,
        "passed": min(agreement.values()) >= THRESHOLD,
    }
    log.info("OpenVINO BF16 vs FP32 top-1 agreement on %d %s: %s", len(x), source, agreement)
    return record
