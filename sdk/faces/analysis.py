"""The analysis pipeline as separable functions: detect -> crop -> infer one batch -> post-process.

The Analyzer, a Triton Python-backend model and the calibration/data-preparation code call
these same functions, so every path makes the same crops and reads logits the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..backends.base import Backend, run_batched
from ..contract.export_manifest import ExportManifest
from ..contract.temperatures import apply_temperature
from ..errors import BackendError, ConfigError
from ..preprocess import Preprocess, to_input_tensor
from ..results import Detection, FaceResult, Prediction, Quality
from ..tasks import TaskSpec
from .align import crop_faces
from .quality import assess_faces

__all__ = [
    "PreparedFaces",
    "STAGES",
    "SKIPPED_LOW_QUALITY",
    "analyze_faces",
    "check_min_quality",
    "finish_faces",
    "infer_crops",
    "postprocess",
    "prepare_faces",
    "select_for_inference",
    "softmax",
]

STAGES = ("decode", "detect", "align", "infer", "post")
"""Stage names used in :attr:`FrameResult.timings` and :meth:`Analyzer.stats` (``align``
covers the face quality measurement as well as the crops)."""

SKIPPED_LOW_QUALITY = "skipped_low_quality"
"""The counter in :meth:`Analyzer.stats` of faces whose backbone run was skipped for low quality."""


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
    min_quality: float = 0.0,
    qualities: Sequence[Quality] | None = None,
) -> tuple[FaceResult, ...]:
    """Measure quality, crop, infer (all faces in one batched call) and post-process the given detections.

    Args:
        frame_bgr: The frame (uint8 BGR).
        detections: Faces to analyse (from a detector or a dataset's boxes).
        backend: The inference backend.
        manifest: Tasks and preprocessing of the model.
        timings: Filled with ``align``, ``infer`` and ``post`` milliseconds when given.
        lock: Optional context manager held around the backend call (thread safety).
        min_quality: Faces whose :class:`Quality` score is below this skip the backbone and are
            reported as not estimated (:func:`finish_faces`); 0 infers every face.
        qualities: The detections' qualities when already measured (see :func:`prepare_faces`).

    Returns:
        One :class:`FaceResult` per detection, in order, each with its ``quality``.
    """
    timings = {} if timings is None else timings
    start = time.perf_counter()
    prepared = prepare_faces(frame_bgr, detections, manifest.preprocess, min_quality, qualities)
    mid = time.perf_counter()
    crops = list(prepared.crops)
    if lock is not None:
        with lock:
            logits = infer_crops(backend, crops, manifest.preprocess)
    else:
        logits = infer_crops(backend, crops, manifest.preprocess)
    end = time.perf_counter()
    faces = finish_faces(prepared, logits, manifest.tasks, manifest.temperatures)
    timings.update(
        align=(mid - start) * 1000.0, infer=(end - mid) * 1000.0, post=(time.perf_counter() - end) * 1000.0
    )
    return faces


def check_min_quality(min_quality: float) -> float:
    """Validate a ``min_quality`` threshold (a number in [0, 1]) and return it as a float."""
    if isinstance(min_quality, bool) or not isinstance(min_quality, (int, float)):
        raise ConfigError(f"min_quality must be a number in [0, 1], got {min_quality!r}")
    value = float(min_quality)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"min_quality must be in [0, 1] (0 runs the backbone on every face), got {min_quality!r}"
        )
    return value


def select_for_inference(qualities: Sequence[Quality], min_quality: float) -> tuple[int, ...]:
    """Indices of the faces whose backbone run is worth it: ``quality.score >= min_quality``.

    With ``min_quality == 0`` every face is selected.
    """
    if min_quality <= 0.0:
        return tuple(range(len(qualities)))
    return tuple(i for i, q in enumerate(qualities) if q.score >= min_quality)


@dataclass(frozen=True, slots=True)
class PreparedFaces:
    """One frame's faces ready for the backbone: every face's quality, which to infer, their crops.

    Attributes:
        detections: Every face of the frame, in order.
        qualities: One :class:`Quality` per detection.
        selected: Indices (into ``detections``) of the faces to run the backbone on.
        crops: The crops of the selected faces, in ``selected`` order.
    """

    detections: tuple[Detection, ...]
    qualities: tuple[Quality, ...]
    selected: tuple[int, ...]
    crops: tuple[np.ndarray, ...]

    @property
    def skipped(self) -> int:
        """How many faces are left out of the backbone run for low quality."""
        return len(self.detections) - len(self.selected)


def prepare_faces(
    frame_bgr: np.ndarray,
    detections: Sequence[Detection],
    spec: Preprocess,
    min_quality: float = 0.0,
    qualities: Sequence[Quality] | None = None,
) -> PreparedFaces:
    """Measure every face's quality and crop those at or above ``min_quality`` (the ``align`` stage).

    ``qualities`` already measured for ``detections`` (streams measure every face before scheduling)
    are used as given instead of measured again.
    """
    detections = tuple(detections)
    qualities = assess_faces(frame_bgr, detections) if qualities is None else tuple(qualities)
    selected = select_for_inference(qualities, min_quality)
    crops = crop_faces(frame_bgr, [detections[i] for i in selected], spec)
    return PreparedFaces(detections, qualities, selected, tuple(crops))


def finish_faces(
    prepared: PreparedFaces,
    logits: Mapping[str, np.ndarray],
    tasks: Sequence[TaskSpec],
    temperatures: Mapping[str, float] | None = None,
) -> tuple[FaceResult, ...]:
    """Post-process the selected faces' logits and return one :class:`FaceResult` per detection.

    ``logits`` hold one row per selected face; ``temperatures`` are applied as in :func:`postprocess`.
    A face left out for low quality is reported as
    not estimated: empty ``attributes``, ``inferred=False``; every face carries its quality.
    """
    chosen = [prepared.detections[i] for i in prepared.selected]
    inferred = dict(zip(prepared.selected, postprocess(chosen, logits, tasks, temperatures), strict=True))
    out = []
    for i, (det, quality) in enumerate(zip(prepared.detections, prepared.qualities, strict=True)):
        face = inferred.get(i)
        if face is None:
            face = FaceResult(det.box, det.score, det.landmarks, attributes={}, inferred=False)
        out.append(replace(face, quality=quality))
    return tuple(out)
