"""The runtime entry point: ``Analyzer(model).analyze(frame) -> FrameResult``.

Thread safety: one Analyzer may be shared by several threads. The detector serialises its
own calls; the backend call is guarded by a lock, so batches never interleave; statistics
are locked. Cropping and post-processing run concurrently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends.base import Backend, create_backend
from .errors import BackendError
from .faces.align import crop_faces
from .faces.detector import DetectorConfig, FaceDetector
from .frames import to_bgr_uint8
from .model_loader import resolve_model
from .pipeline import analyze_faces, infer_crops, postprocess
from .results import Detection, FrameResult
from .stats import StageStats
from .streams import FrameStream
from .tracking import IoUTracker, TrackerConfig

if TYPE_CHECKING:
    from .multistream import MultiStream

__all__ = ["Analyzer"]

logger = logging.getLogger(__name__)


class Analyzer:
    """Detect faces and read their attributes.

    Args:
        model: Export directory, ``.onnx`` file, ``.engine`` file (with ``export.json``
            beside it) or, with ``backend="torch"``, a checkpoint directory.
        backend: ``"auto"`` (TensorRT engine when the export has one and a GPU is present,
            else ONNX Runtime with CUDA when available, else ONNX Runtime on CPU),
            ``"onnxruntime"``, ``"tensorrt"`` or ``"torch"``.
        detector: YuNet model path, a ready detector (anything with ``detect(frame)``),
            or ``None`` for the documented lookup.
        detector_config: Thresholds and sizes for the built-in detector.
        precision: Choose the export's ``fp32``/``fp16``/``int8`` model.
        tracker: Tracking and smoothing settings used by :meth:`stream`.
        verify: Check model file hashes against the manifest on load.
        **backend_opts: Passed to the backend (``providers``, ``intra_op_threads``, ``device``...).
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        backend: str = "auto",
        detector: str | os.PathLike[str] | Any | None = None,
        detector_config: DetectorConfig | None = None,
        precision: str | None = None,
        tracker: TrackerConfig | None = None,
        verify: bool = True,
        **backend_opts: Any,
    ) -> None:
        # explicit backend options pin auto to its old choice (they are one runtime's options)
        resolved = resolve_model(model, backend, precision, verify, auto_select=not backend_opts)
        self.manifest = resolved.manifest
        self.model_path = resolved.path
        if hasattr(detector, "detect"):
            self.detector = detector
        else:
            self.detector = FaceDetector(detector, detector_config)
        self.backend: Backend | None = create_backend(
            resolved.backend, self.manifest, resolved.path, **{**resolved.options, **backend_opts}
        )
        describe = getattr(self.backend, "describe", None)
        why = f" ({resolved.reason})" if resolved.reason else ""
        logger.info("analyzer backend: %s%s", describe() if describe else self.backend.name, why)
        self.tracker_config = tracker or TrackerConfig()
        self._backend_lock = threading.Lock()
        self._stats = StageStats()

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.manifest.tasks)

    def _require_open(self) -> Backend:
        if self.backend is None:
            raise BackendError("this Analyzer was closed; create a new one")
        return self.backend

    def analyze_detections(
        self, frame: Any, detections: Sequence[Detection], index: int = 0, timestamp: float | None = None
    ) -> FrameResult:
        """Analyse given faces (e.g. a dataset's boxes) without running the detector."""
        backend = self._require_open()
        image = to_bgr_uint8(frame)
        timings: dict[str, float] = {}
        faces = analyze_faces(image, detections, backend, self.manifest, timings, self._backend_lock)
        self._stats.add(timings)
        return FrameResult(
            index=index,
            timestamp=time.time() if timestamp is None else timestamp,
            faces=faces,
            timings=timings,
        )

    def analyze(self, frame: Any, index: int = 0, timestamp: float | None = None) -> FrameResult:
        """Detect every face of one frame and read their attributes (one batched backend call).

        Args:
            frame: uint8 BGR image (grayscale, BGRA, float and uint16 are converted; see
                :func:`facesdk.frames.to_bgr_uint8`).
            index: Frame index recorded in the result.
            timestamp: Capture time recorded in the result (default: now).
        """
        backend = self._require_open()
        image = to_bgr_uint8(frame)
        start = time.perf_counter()
        detections = self.detector.detect(image)
        timings = {"detect": (time.perf_counter() - start) * 1000.0}
        faces = analyze_faces(image, detections, backend, self.manifest, timings, self._backend_lock)
        self._stats.add(timings)
        return FrameResult(
            index=index,
            timestamp=time.time() if timestamp is None else timestamp,
            faces=faces,
            timings=timings,
        )

    def analyze_batch(self, frames: Iterable[Any]) -> list[FrameResult]:
        """Analyse independent frames (indices 0..n-1, no tracking) with one batched inference.

        The faces of all frames go through the backend together (split at its max batch);
        ``align``, ``infer`` and ``post`` timings are the batch's, shared evenly by its frames.
        """
        backend = self._require_open()
        images = [to_bgr_uint8(frame) for frame in frames]
        if not images:
            return []
        detections, detect_ms = [], []
        for image in images:
            start = time.perf_counter()
            detections.append(self.detector.detect(image))
            detect_ms.append((time.perf_counter() - start) * 1000.0)
        start = time.perf_counter()
        crops = [
            c
            for image, dets in zip(images, detections, strict=True)
            for c in crop_faces(image, dets, self.manifest.preprocess)
        ]
        mid = time.perf_counter()
        with self._backend_lock:
            logits = infer_crops(backend, crops, self.manifest.preprocess)
        end = time.perf_counter()
        flat = [d for dets in detections for d in dets]
        faces = postprocess(flat, logits, self.manifest.tasks)
        share = 1000.0 / len(images)
        shared = {
            "align": (mid - start) * share,
            "infer": (end - mid) * share,
            "post": (time.perf_counter() - end) * share,
        }
        results, offset, now = [], 0, time.time()
        for i, dets in enumerate(detections):
            timings = {"detect": detect_ms[i], **shared}
            self._stats.add(timings)
            results.append(FrameResult(i, now, faces[offset : offset + len(dets)], timings))
            offset += len(dets)
        return results

    def stream(
        self, source: Any, track: bool = True, smoothing: float | None = None, **stream_opts: Any
    ) -> Iterator[FrameResult]:
        """Analyse a camera, video file, URL or iterable of frames, frame by frame.

        Args:
            source: Camera index, path, URL or iterable of frames (see :class:`FrameStream`).
            track: Give faces track ids across frames.
            smoothing: Per-track probability smoothing factor; ``None`` uses the tracker
                config, ``0`` turns it off.
            **stream_opts: Passed to :class:`FrameStream` (``live``, ``queue_size``, ``opener``...).
        """
        for _, result in self.stream_frames(source, track, smoothing, **stream_opts):
            yield result

    def stream_frames(
        self, source: Any, track: bool = True, smoothing: float | None = None, **stream_opts: Any
    ) -> Iterator[tuple[np.ndarray, FrameResult]]:
        """Like :meth:`stream`, but yields ``(frame_bgr, result)`` pairs (for drawing)."""
        config = self.tracker_config
        if smoothing is not None:
            config = TrackerConfig(config.iou_threshold, config.max_age, smoothing)
        tracker = IoUTracker(config) if track else None
        frames = source if isinstance(source, FrameStream) else FrameStream(source, **stream_opts)
        label = str(source) if isinstance(source, (str, int, os.PathLike)) else None
        with frames:
            for item in frames:
                image = to_bgr_uint8(item.image)
                result = self.analyze(image, index=item.index, timestamp=item.timestamp)
                timings = {"decode": item.decode_ms, **result.timings}
                self._stats.add({"decode": item.decode_ms})
                faces = tracker.update(result.faces) if tracker is not None else result.faces
                yield image, FrameResult(result.index, result.timestamp, faces, timings, source=label)

    def streams(
        self,
        sources: Sequence[Any] | Mapping[str, Any],
        track: bool = True,
        smoothing: float | None = None,
        **options: Any,
    ) -> MultiStream:
        """Analyse several sources at once, batching the faces of all of them into shared backbone calls.

        Each result carries its source's name in :attr:`FrameResult.source`; a failing source
        is dropped and recorded in ``.errors`` while the others keep flowing. See
        :class:`facesdk.multistream.MultiStream` for ``options`` (``on_error``, stream options).
        """
        from .multistream import MultiStream

        return MultiStream(self, sources, track=track, smoothing=smoothing, **options)

    def stats(self) -> dict[str, dict[str, float]]:
        """Live per-stage timing statistics (ms): decode, detect, align, infer, post."""
        return self._stats.summary()

    def reset_stats(self) -> None:
        """Forget the timing statistics so far (e.g. after a warm-up)."""
        self._stats.reset()

    def close(self) -> None:
        """Release the backend (idempotent)."""
        with self._backend_lock:
            if self.backend is not None:
                self.backend.close()
                self.backend = None

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()
