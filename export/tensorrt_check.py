"""Compare a built TensorRT engine with ONNX Runtime: top-1 agreement and logit differences.

The engine runs through the SDK's own :class:`facesdk.backends.tensorrt.TensorRTBackend`
(cuda-python buffers), so the export checks exactly the code path the Analyzer uses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from facesdk.export_manifest import ExportManifest

from .errors import ParityError
from .onnx_export import INPUT_NAME, ort_session

__all__ = ["AGREEMENT_MIN", "compare_engine_with_onnx", "agreement"]

log = logging.getLogger(__name__)

AGREEMENT_MIN = {"fp32": 0.999, "fp16": 0.999}
"""Smallest per-task top-1 agreement with ONNX Runtime fp32; int8 is recorded, not enforced here
(the calibration stage owns its agreement report)."""


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of rows whose arg-max class is the same."""
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


def compare_engine_with_onnx(
    manifest: ExportManifest,
    engine_path: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    precision: str,
    samples: int = 512,
    batch: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run ``samples`` random inputs through the engine and ONNX Runtime; return the figures.

    Args:
        manifest: A manifest that lists the engine (with its ``tensorrt`` record).
        engine_path: The engine file inside the staged export directory.
        onnx_path: The fp32 ONNX reference.
        precision: The engine's precision (picks the agreement threshold).
        samples: Number of inputs.
        batch: Batch size per call (default: the manifest's max batch).
        seed: Seed of the random inputs.

    Raises:
        ParityError: A task's agreement is below :data:`AGREEMENT_MIN` for this precision.
    """
    from facesdk.backends.tensorrt import TensorRTBackend

    names: Sequence[str] = [o.name for o in manifest.outputs]
    h, w = manifest.preprocess.input_size
    step = int(batch or manifest.max_batch)
    rng = np.random.default_rng(seed)
    session = ort_session(onnx_path)
    ref: dict[str, list[np.ndarray]] = {n: [] for n in names}
    got: dict[str, list[np.ndarray]] = {n: [] for n in names}
    with TensorRTBackend(manifest, engine_path) as engine:
        for start in tqdm(range(0, samples, step), desc=f"TensorRT {precision} vs ORT", leave=False):
            x = rng.standard_normal((min(step, samples - start), 3, h, w)).astype(np.float32)
            for name, value in zip(names, session.run(list(names), {INPUT_NAME: x}), strict=True):
                ref[name].append(value)
            out = engine.run(x)
            for name in names:
                got[name].append(out[name])
    figures: dict[str, Any] = {"samples": samples, "reference": "onnxruntime fp32", "tasks": {}}
    for name in names:
        a, b = np.concatenate(ref[name]), np.concatenate(got[name])
        figures["tasks"][name] = {
            "top1_agreement": agreement(a, b),
            "max_abs_diff": float(np.abs(a - b).max()),
        }
    threshold = AGREEMENT_MIN.get(precision)
    figures["min_agreement"] = threshold
    low = {
        n: f["top1_agreement"]
        for n, f in figures["tasks"].items()
        if threshold and f["top1_agreement"] < threshold
    }
    log.info("TensorRT %s vs ONNX Runtime: %s", precision, figures["tasks"])
    if low:
        raise ParityError(
            f"the {precision} engine agrees with ONNX Runtime on top-1 for only {low} of {samples} inputs "
            f"(need >= {threshold}); the engine is not written. Check the fp16 ONNX's fp32 blocks."
        )
    return figures
