"""The runtime core that every entry point drives: one backend, its call slots, the statistics.

:class:`Engine` owns the three steps of analysing faces — :meth:`~Engine.prepare` (quality and
crops), :meth:`~Engine.infer` (batched backend calls, as many at once as the backend allows) and :meth:`~Engine.finish`
(post-processing) — and the per-stage statistics. ``Analyzer.analyze``, ``analyze_batch``,
``analyze_detections``, the stream runner (``Analyzer.stream``/``streams``), and the demo all
call these methods; none of them reaches into another object's private state.

Thread safety: one Engine may be shared by several threads. At most
:attr:`Engine.parallel_calls` backend calls run at once (1 unless the backend says it runs
concurrent calls well, like ONNX Runtime on a CPU: :func:`~facesdk.backends.base.parallel_calls`);
closing or replacing the backend waits for the calls in progress; statistics are locked;
cropping and post-processing run concurrently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np

from .backends.base import DEFAULT_CLASSIFIER_BATCH, Backend, parallel_calls, stream_batch
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
        self._calls = threading.Condition()
        self._active = 0  # backend calls in progress
        self._exclusive = False  # closing or replacing the backend: no new call starts
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

    @property
    def parallel_calls(self) -> int:
        """Backend calls that may run at once (a stream's classifier runs this many workers)."""
        return parallel_calls(self.backend)

    def _enter(self) -> Backend:
        """Wait for a free call slot; the backend to call (:class:`BackendError` once closed)."""
        with self._calls:
            while True:
                backend = self._backend
                if backend is None:
                    raise BackendError("this Analyzer was closed; create a new one")
                if not self._exclusive and self._active < parallel_calls(backend):
                    self._active += 1
                    return backend
                self._calls.wait()

    def _leave(self) -> None:
        with self._calls:
            self._active -= 1
            self._calls.notify_all()

    def _drain(self) -> None:
        """Under ``self._calls``: stop new calls and wait for those in progress."""
        while self._exclusive:  # another close or replace in progress: let it finish
            self._calls.wait()
        self._exclusive = True
        while self._active:
            self._calls.wait()

    def prepare(
        self, image: np.ndarray, detections: Sequence[Detection], qualities: Sequence[Quality] | None = None
    ) -> PreparedFaces:
        """Measure quality (unless given) and crop the faces at or above ``min_quality``."""
        return prepare_faces(image, detections, self.manifest.preprocess, self.min_quality, qualities)

    def infer(self, crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Logits for ``crops``, in order: one backend call (split at the backend's max batch), or,
        where the backend runs calls at once (:attr:`parallel_calls`), that many calls side by side
        on consecutive shares of the crops."""
        if not crops:
            return {}
        parts = min(self.parallel_calls, len(crops))
        if parts <= 1:
            return self._call(crops)
        bounds = np.linspace(0, len(crops), parts + 1).round().astype(int)
        shares = [crops[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        out: list[dict[str, np.ndarray] | None] = [None] * parts
        errors: list[BaseException | None] = [None] * parts

        def share(i: int) -> None:
            try:
                out[i] = self._call(shares[i])
            except BaseException as exc:  # raised in the caller's thread below
                errors[i] = exc

        helpers = [
            threading.Thread(target=share, args=(i,), name="facesdk-engine-call", daemon=True)
            for i in range(1, parts)
        ]
        for helper in helpers:
            helper.start()
        share(0)
        for helper in helpers:
            helper.join()
        for error in errors:
            if error is not None:
                raise error
        done = [o for o in out if o is not None]
        return {name: np.concatenate([o[name] for o in done], axis=0) for name in done[0]}

    def _call(self, crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """One backend call on ``crops`` (split at the max batch) once a call slot is free."""
        backend = self._enter()
        try:
            return infer_crops(backend, crops, self.manifest.preprocess)
        finally:
            self._leave()

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
        """Run on ``backend`` from now on, after the calls in progress (the previous one is left
        open: the new one may wrap it)."""
        with self._calls:
            self._drain()
            self._backend = backend
            self._exclusive = False
            self._calls.notify_all()

    def close(self) -> None:
        """Release the backend (idempotent); waits for the backend calls in progress."""
        with self._calls:
            self._drain()
            try:
                if self._backend is not None:
                    self._backend.close()
            finally:
                self._backend = None
                self._exclusive = False
                self._calls.notify_all()
