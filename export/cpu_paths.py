"""Agreement of OpenVINO's BF16 mode with FP32, measured at export when the exporting CPU has BF16.

BF16 is an execution mode of ``model.onnx``, not a file. ``backend="auto"`` may choose it only where
its top-1 agreement with FP32 was checked on face crops (``facesdk.backends.select``). When the
exporting CPU has AVX-512 BF16 or AMX and OpenVINO is installed, the export measures it on the
checkpoint's validation crops or, failing those, the calibration set, and records it as the
optional field ``models["onnx-fp32"].extra["openvino_bf16"]`` of ``export.json``. Otherwise nothing is
recorded and ``auto`` measures it at first use on a BF16 CPU.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.backends import create_backend, run_batched
from facesdk.backends.select import THRESHOLD, cpu_signature
from facesdk.export_manifest import ExportManifest

__all__ = ["bf16_agreement", "export_face_crops"]

log = logging.getLogger(__name__)

MAX_CROPS = 256


def export_face_crops(ckpt: Path, calib: Path | None) -> tuple[np.ndarray, str] | None:
    """The checkpoint's validation crops, else the calibration set's crops, else None."""
    from facesdk.checkpoint import load_checkpoint_manifest

    from .pipeline import load_validation_crops

    crops = load_validation_crops(ckpt, load_checkpoint_manifest(ckpt))
    if crops is not None:
        return crops.numpy()[:MAX_CROPS].astype(np.float32), "checkpoint validation crops"
    if calib is not None:
        try:
            calibset = importlib.import_module("facesdk.calibration.calibset")
        except ImportError:
            return None
        arrays, _ = calibset.load_calibration_set(calib).arrays(calib)
        if len(arrays):
            return np.ascontiguousarray(arrays[:MAX_CROPS], dtype=np.float32), f"calibration set {calib.name}"
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
