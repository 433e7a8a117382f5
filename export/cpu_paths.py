"""Agreement of the OpenVINO CPU paths with FP32, measured at export for every path this CPU can run.

``backend="auto"`` may choose a path other than FP32 arithmetic only on a record of its top-1
agreement with ONNX Runtime FP32 on face crops whose Wilson 95% lower bound is at least 0.98 on
every task (``facesdk.auto.approval``). With OpenVINO installed, the export measures
OpenVINO running ``model.int8.onnx`` (float parts in FP32) and, where the exporting CPU has AVX-512
BF16 or AMX, OpenVINO BF16 on ``model.onnx`` and on ``model.int8.onnx``, on the checkpoint's
validation crops or, failing those, the calibration set (up to :data:`MAX_CROPS`). Each record goes
to ``models[key].extra["openvino_agreement"][hint]`` of ``export.json``. A path this CPU cannot run
(BF16 on a CPU without it) is checked once on the device instead:
``python -m facesdk.auto approve --model EXPORT --crops DIR``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.auto.approval import agreement_record
from facesdk.auto.choice import candidate_paths, cpu_signature
from facesdk.backends import create_backend, run_batched
from facesdk.contract.export_manifest import ExportManifest, ModelEntry

__all__ = ["openvino_agreement", "record_openvino_agreement", "export_face_crops", "MAX_CROPS"]

log = logging.getLogger(__name__)

MAX_CROPS = 1024
"""At most this many crops are compared (a Wilson bound of 0.98 needs at least 189, all agreeing)."""


def export_face_crops(ckpt: Path, calib: Path | None) -> tuple[np.ndarray, str] | None:
    """The checkpoint's validation crops, else the calibration set's crops, else None."""
    from facesdk.contract.checkpoint import load_checkpoint_manifest

    from .parity import load_validation_crops

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


def openvino_agreement(
    stage: Path,
    manifest: ExportManifest,
    crops: np.ndarray,
    source: str,
    cpu: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model key: {hint: record}}`` for every OpenVINO path other than FP32 this CPU can run.

    Args:
        stage: The export folder being written (holds the model files ``manifest`` names).
        manifest: The export's manifest so far (models written, input and output names).
        crops: Preprocessed face crops (N x 3 x H x W).
        source: What the crops are (recorded).
        cpu: The CPU signature (default: this machine's).
    """
    cpu = dict(cpu or cpu_signature())
    paths = [p for p in candidate_paths(manifest, cpu) if p.runtime == "openvino" and not p.exact]
    if not paths:
        return {}
    with create_backend("onnxruntime", manifest, stage / manifest.models["onnx-fp32"].file.path) as ref:  # type: ignore[attr-defined]
        want = run_batched(ref, crops)
    info = {"cpu": cpu["model"], "openvino": cpu["runtimes"]["openvino"], "source": "export"}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in paths:
        file = stage / manifest.models[path.model_key].file.path
        with create_backend("openvino", manifest, file, **path.options()) as backend:  # type: ignore[attr-defined]
            got = run_batched(backend, crops)
        out.setdefault(path.model_key, {})[str(path.hint)] = agreement_record(want, got, source, **info)
        log.info("%s vs ONNX Runtime FP32 on %d %s: %s", path.name, len(crops), source,
                 out[path.model_key][str(path.hint)]["agreement_lower_bound"])  # fmt: skip
    return out


def record_openvino_agreement(
    stage: Path, manifest: ExportManifest, models: dict[str, ModelEntry], ckpt: Path, calib: Path | None
) -> dict[str, ModelEntry]:
    """``models`` with ``extra["openvino_agreement"]`` added where the export could measure it."""
    if cpu_signature()["runtimes"].get("openvino") is None:
        log.info("no OpenVINO agreement at export: OpenVINO is not installed (pip install '.[openvino]')")
        return models
    crops = export_face_crops(ckpt, calib)
    if crops is None:
        log.info("no OpenVINO agreement at export: no face crops (validation crops or --calib); run approve")
        return models
    records = openvino_agreement(stage, replace(manifest, models=models), *crops)
    return {
        key: replace(entry, extra={**entry.extra, "openvino_agreement": records[key]})
        if key in records
        else entry
        for key, entry in models.items()
    }
