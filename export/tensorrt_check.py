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

from facesdk.backends.onnxruntime import OnnxFileBackend
from facesdk.bench import compare_arrays
from facesdk.contract.export_manifest import ExportManifest
from facesdk.progress import progress_bar

from .errors import ParityError

__all__ = ["AGREEMENT_MIN", "compare_engine_with_onnx"]

log = logging.getLogger(__name__)

AGREEMENT_MIN = {"fp32": 0.999, "fp16": 0.999}
"""Smallest per-task top-1 agreement (point estimate) with ONNX Runtime fp32; the record carries each
task's count and Wilson bound too. int8 is recorded, not enforced here (the calibration gate owns it)."""


def _batches(crops: np.ndarray | None, samples: int, step: int, shape: tuple[int, int], seed: int) -> Any:
    if crops is not None:
        for start in range(0, len(crops), step):
            yield np.ascontiguousarray(crops[start : start + step], dtype=np.float32)
        return
    rng = np.random.default_rng(seed)
    for start in range(0, samples, step):
        yield rng.standard_normal((min(step, samples - start), 3, *shape)).astype(np.float32)


def compare_engine_with_onnx(
    manifest: ExportManifest,
    engine_path: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    precision: str,
    samples: int = 512,
    batch: int | None = None,
    seed: int = 0,
    crops: np.ndarray | None = None,
    crops_source: str = "",
) -> dict[str, Any]:
    """Run face crops (or ``samples`` random inputs) through the engine and ONNX Runtime.

    Args:
        manifest: A manifest that lists the engine (with its ``tensorrt`` record).
        engine_path: The engine file inside the staged export directory.
        onnx_path: The fp32 ONNX reference.
        precision: The engine's precision (picks the agreement threshold).
        samples: Number of random inputs when no ``crops`` are given.
        batch: Batch size per call (default: the manifest's max batch).
        seed: Seed of the random inputs.
        crops: Preprocessed face crops (N x 3 x H x W) to compare on instead of random inputs.
        crops_source: What ``crops`` are, for the record.

    Raises:
        ParityError: A task's agreement is below :data:`AGREEMENT_MIN` for this precision.
    """
    from facesdk.backends.tensorrt import TensorRTBackend

    names: Sequence[str] = [o.name for o in manifest.outputs]
    step = int(batch or manifest.max_batch)
    ref: dict[str, list[np.ndarray]] = {n: [] for n in names}
    got: dict[str, list[np.ndarray]] = {n: [] for n in names}
    with TensorRTBackend(manifest, engine_path) as engine, OnnxFileBackend(onnx_path, names, step) as session:
        x_all = _batches(crops, samples, step, tuple(manifest.preprocess.input_size), seed)
        for x in progress_bar(x_all, desc=f"TensorRT {precision} vs ORT", leave=False):
            for part, backend in ((ref, session), (got, engine)):
                out = backend.run(x)
                for name in names:
                    part[name].append(out[name])
    inputs = crops_source or f"{samples} random normal inputs"
    comparison = compare_arrays(
        {n: np.concatenate(v) for n, v in ref.items()},
        {n: np.concatenate(v) for n, v in got.items()},
        names,
        inputs=inputs,
        reference_name="onnxruntime fp32",
    )
    figures: dict[str, Any] = {"samples": comparison.crops, **comparison.to_json()}
    threshold = AGREEMENT_MIN.get(precision)
    figures["min_agreement"] = threshold
    low = {n: a.rate for n, a in comparison.tasks.items() if threshold and a.rate < threshold}
    log.info("TensorRT %s vs ONNX Runtime: %s", precision, figures["tasks"])
    if low:
        raise ParityError(
            f"the {precision} engine agrees with ONNX Runtime on top-1 for only {low} of {comparison.crops} "
            f"inputs ({inputs}; need >= {threshold}); the engine is not written. Check the fp16 ONNX's fp32 blocks."
        )
    return figures
