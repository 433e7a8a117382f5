"""The runtime core that every entry point drives: one backend, its lock, the statistics.

:class:`Engine` owns the three steps of analysing faces — :meth:`~Engine.prepare` (quality and
crops), :meth:`~Engine.infer` (one batched, locked backend call) and :meth:`~Engine.finish`
(post-processing) — and the per-stage statistics. ``Analyzer.analyze``, ``analyze_batch``,
``analyze_detections``, the stream runner (``Analyzer.stream``/``streams``), and the demo all
call these methods; none of them reaches into another object's private state.

Thread safety: one Engine may be shared by several threads. Backend calls are serialised by
one lock (batches never interleave); statistics are locked; cropping and post-processing run
concurrently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np

from .backends.base import DEFAULT_CLASSIFIER_BATCH, Backend, stream_batch
from .contract.export_manifest import ExportManifest
from .errors import BackendError
from .faces.analysis import (
    SKIPPED_LOW_QUALITY,
    PreparedFaces,
    finish_faces,
    infer_crops,
    postprocess,
    prepare_faces,
)
from .results import Detection, FaceResult, Quality
from .stats import StageStats

__all__ = ["CLASSIFIED_FACES", "CLASSIFY_STAGE", "DEFAULT_CLASSIFIER_BATCH", "Engine", "stream_batch"]

CLASSIFY_STAGE = "classify"
"""The statistics stage of a stream classifier's backbone calls (ms per call, not per frame)."""
CLASSIFIED_FACES = "classified_faces"
"""The statistics counter of faces a stream classifier has run through the backbone."""


class Engine:
    """Runs faces through one backend: prepare -> infer -> finish, with statistics.

    Args:
        backend: The inference backend (the Engine closes it in :meth:`close`).
        manifest: The model's tasks, preprocessing and temperatures.
        min_quality: Faces whose quality score is below this skip the backbone.
    """

    def __init__(self, backend: Backend, manifest: ExportManifest, min_quality: float = 0.0) -> None:
        self._backend: Backend | None = backend
        self.manifest = manifest
        self.min_quality = min_quality
        self._lock = threading.Lock()
        self._stats = StageStats()

    @property
    def backend(self) -> Backend:
        """The open backend; :class:`BackendError` once the engine is closed."""
        backend = self._backend
        if backend is None:
            raise BackendError("this Analyzer was closed; create a new one")
        return backend

    @property
    def closed(self) -> bool:
        return self._backend is None

    @property
    def batch_size(self) -> int:
        """Crops per backbone call that the backend runs well (streams batch up to this)."""
        return stream_batch(self.backend)

    def prepare(
        self, image: np.ndarray, detections: Sequence[Detection], qualities: Sequence[Quality] | None = None
    ) -> PreparedFaces:
        """Measure quality (unless given) and crop the faces at or above ``min_quality``."""
        return prepare_faces(image, detections, self.manifest.preprocess, self.min_quality, qualities)

    def infer(self, crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Logits for ``crops`` in one locked backend call (split at the backend's max batch)."""
        if not crops:
            return {}
        backend = self.backend
        with self._lock:
            if self._backend is None:
                raise BackendError("this Analyzer was closed; create a new one")
            return infer_crops(backend, crops, self.manifest.preprocess)

    def finish(self, prepared: PreparedFaces, logits: Mapping[str, np.ndarray]) -> tuple[FaceResult, ...]:
        """One :class:`FaceResult` per detection of ``prepared`` from the selected faces' logits."""
        return finish_faces(prepared, logits, self.manifest.tasks, self.manifest.temperatures)

    def classify(
        self, detections: Sequence[Detection], crops: Sequence[np.ndarray]
    ) -> tuple[FaceResult, ...]:
        """One estimated :class:`FaceResult` per crop (already cropped from ``detections``)."""
        logits = self.infer(crops)
        return postprocess(detections, logits, self.manifest.tasks, self.manifest.temperatures)

    def analyze(
        self,
        image: np.ndarray,
        detections: Sequence[Detection],
        timings: MutableMapping[str, float] | None = None,
        qualities: Sequence[Quality] | None = None,
    ) -> tuple[FaceResult, ...]:
        """Prepare, infer and finish one frame's faces; fills ``align``/``infer``/``post`` ms."""
        return self.analyze_many([image], [detections], timings, [qualities])[0]

    def analyze_many(
        self,
        images: Sequence[np.ndarray],
        detections: Sequence[Sequence[Detection]],
        timings: MutableMapping[str, float] | None = None,
        qualities: Sequence[Sequence[Quality] | None] | None = None,
    ) -> list[tuple[FaceResult, ...]]:
        """The faces of several frames through one batched backend call.

        ``timings`` receives the whole call's ``align``, ``infer`` and ``post`` milliseconds.
        """
        start = time.perf_counter()
        given = qualities or [None] * len(images)
        prepared = [
            self.prepare(image, dets, q) for image, dets, q in zip(images, detections, given, strict=True)
        ]
        mid = time.perf_counter()
        logits = self.infer([c for p in prepared for c in p.crops])
        end = time.perf_counter()
        out, offset = [], 0
        for p in prepared:
            rows = slice(offset, offset + len(p.selected))
            out.append(self.finish(p, {k: v[rows] for k, v in logits.items()}))
            offset += len(p.selected)
        if timings is not None:
            timings.update(
                align=(mid - start) * 1000.0,
                infer=(end - mid) * 1000.0,
                post=(time.perf_counter() - end) * 1000.0,
            )
        return out

    def record(self, timings: Mapping[str, float], skipped_low_quality: int = 0) -> None:
        """Add one frame's stage timings (ms) and its faces skipped for low quality to the statistics."""
        self._stats.add(timings)
        if self.min_quality > 0:
            self._stats.count(SKIPPED_LOW_QUALITY, skipped_low_quality)

    def record_call(self, ms: float, crops: int) -> None:
        """Record one backbone call of a stream's classifier: ``classify`` ms and ``classified`` faces."""
        self._stats.add({CLASSIFY_STAGE: ms})
        self._stats.count(CLASSIFIED_FACES, crops)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the statistics' event counter ``name``."""
        self._stats.count(name, n)

    def stats(self) -> dict[str, dict[str, float]]:
        return self._stats.summary()

    def reset_stats(self) -> None:
        self._stats.reset()

    def replace_backend(self, backend: Backend) -> None:
        """Run on ``backend`` from now on (the previous one is left open: the new one may wrap it)."""
        with self._lock:
            self._backend = backend

    def close(self) -> None:
        """Release the backend (idempotent); waits for a backend call in progress."""
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None
