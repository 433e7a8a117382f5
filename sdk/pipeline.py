"""The analysis pipeline as separable functions: detect -> crop -> infer one batch -> post-process.

The Analyzer, a Triton Python-backend model and the calibration/data-preparation code call
these same functions, so every path makes the same crops and reads logits the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np

from .backends.base import Backend, run_batched
from .errors import BackendError
from .export_manifest import ExportManifest
from .faces.align import crop_faces
from .preprocess import Preprocess, to_input_tensor
from .results import Detection, FaceResult, Prediction
from .tasks import TaskSpec
from .temperature import apply_temperature

__all__ = ["analyze_faces", "infer_crops", "postprocess", "softmax", "STAGES"]

STAGES = ("decode", "detect", "align", "infer", "post")
"""Stage names used in :attr:`FrameResult.timings` and :meth:`Analyzer.stats`."""


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64 (rows sum to 1)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def infer_crops(backend: Backend, crops: Sequence[np.ndarray], spec: Preprocess) -> dict[str, np.ndarray]:
    """Normalise crops into one N x 3 x H x W batch and run it, split at ``backend.max_batch``."""
    if not crops:
        return {}
    return run_batched(backend, to_input_tensor(crops, spec))


def postprocess(
    detections: Sequence[Detection],
    logits: Mapping[str, np.ndarray],
    tasks: Sequence[TaskSpec],
    temperatures: Mapping[str, float] | None = None,
) -> tuple[FaceResult, ...]:
    """Turn per-task logits into one :class:`FaceResult` per detection (softmax probabilities).

    Every task of ``tasks`` becomes an entry of ``FaceResult.attributes``. A task's probabilities
    are ``softmax(logits / T)`` with ``T`` its temperature in ``temperatures`` (the manifest's;
    1.0 when absent), which changes confidences, never the predicted label.
    """
    temperatures = temperatures or {}
    if not detections:
        return ()
    probs = {}
    for task in tasks:
        values = logits.get(task.name)
        if values is None or values.shape != (len(detections), task.num_classes):
            found = None if values is None else values.shape
            raise BackendError(
                f"expected logits {task.name!r} of shape ({len(detections)}, {task.num_classes}), got {found}"
            )
        probs[task.name] = softmax(apply_temperature(values, temperatures.get(task.name, 1.0)))
    faces = []
    for i, det in enumerate(detections):
        attributes = {t.name: Prediction.from_probs(t.labels, probs[t.name][i]) for t in tasks}
        faces.append(FaceResult(box=det.box, score=det.score, landmarks=det.landmarks, attributes=attributes))
    return tuple(faces)


def analyze_faces(
    frame_bgr: np.ndarray,
    detections: Sequence[Detection],
    backend: Backend,
    manifest: ExportManifest,
    timings: MutableMapping[str, float] | None = None,
    lock: Any = None,
) -> tuple[FaceResult, ...]:
    """Crop, infer (all faces in one batched call) and post-process the given detections.

    Args:
        frame_bgr: The frame (uint8 BGR).
        detections: Faces to analyse (from a detector or a dataset's boxes).
        backend: The inference backend.
        manifest: Tasks and preprocessing of the model.
        timings: Filled with ``align``, ``infer`` and ``post`` milliseconds when given.
        lock: Optional context manager held around the backend call (thread safety).
    """
    timings = {} if timings is None else timings
    start = time.perf_counter()
    crops = crop_faces(frame_bgr, detections, manifest.preprocess)
    mid = time.perf_counter()
    if lock is not None:
        with lock:
            logits = infer_crops(backend, crops, manifest.preprocess)
    else:
        logits = infer_crops(backend, crops, manifest.preprocess)
    end = time.perf_counter()
    faces = postprocess(detections, logits, manifest.tasks, manifest.temperatures)
    timings.update(
        align=(mid - start) * 1000.0, infer=(end - mid) * 1000.0, post=(time.perf_counter() - end) * 1000.0
    )
    return faces
