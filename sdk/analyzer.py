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

from .arguments import check_detections, check_model_arg
from .backends.base import Backend, create_backend
from .errors import BackendError
from .faces.detector import DetectorConfig, FaceDetector, stream_config
from .frames import to_bgr_uint8
from .model_loader import resolve_model
from .pipeline import (
    SKIPPED_LOW_QUALITY,
    analyze_faces,
    check_min_quality,
    finish_faces,
    infer_crops,
    prepare_faces,
)
from .results import Detection, FaceResult, FrameResult
from .scheduling import ScheduleConfig, StreamScheduler
from .stats import StageStats
from .stream_runner import Clock, run_stream
from .streams import FrameStream
from .tracking import TrackerConfig

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
        detector_config: Thresholds and sizes for the built-in detector (single images).
        precision: Choose the export's ``fp32``/``fp16``/``int8`` model.
        tracker: Tracking and smoothing settings used by :meth:`stream`.
        schedule: Which tracked faces streams send to the backbone (default
            :class:`~facesdk.scheduling.ScheduleConfig`: new tracks, then estimates about to be
            0.9 s old, then clearly better views; two faces per frame at most).
        stream_detector_config: Detector settings for streams (default: ``detector_config``
            with ``max_side`` at most 640, see :data:`facesdk.faces.detector.STREAM_MAX_SIDE`).
            Ignored when ``detector`` is a ready detector object (streams use it as given).
        verify: Check model file hashes against the manifest on load.
        min_quality: Skip the backbone for faces whose quality score (``FaceResult.quality``,
            in [0, 1]) is below this. A single image reports such a face as not estimated
            (empty ``attributes``, ``inferred=False``); in a stream it keeps its track's last
            estimate if it has one. Counted in :meth:`stats` as ``skipped_low_quality``.
            0 (the default) runs the backbone on every face.
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
        min_quality: float = 0.0,
        schedule: ScheduleConfig | None = None,
        stream_detector_config: DetectorConfig | None = None,
        **backend_opts: Any,
    ) -> None:
        check_model_arg(model)
        self.min_quality = check_min_quality(min_quality)
        # explicit backend options pin auto to its old choice (they are one runtime's options)
        resolved = resolve_model(model, backend, precision, verify, auto_select=not backend_opts)
        self.manifest = resolved.manifest
        self.model_path = resolved.path
        self._stream_detector: Any = None
        self._stream_detector_lock = threading.Lock()
        if hasattr(detector, "detect"):
            self.detector = detector
            self._stream_detector = detector
        else:
            self.detector = FaceDetector(detector, detector_config)
        self.stream_detector_config = stream_detector_config or stream_config(detector_config)
        self.backend: Backend | None = create_backend(
            resolved.backend, self.manifest, resolved.path, **{**resolved.options, **backend_opts}
        )
        describe = getattr(self.backend, "describe", None)
        why = f" ({resolved.reason})" if resolved.reason else ""
        logger.info("analyzer backend: %s%s", describe() if describe else self.backend.name, why)
        self.tracker_config = tracker or TrackerConfig()
        self.schedule_config = schedule or ScheduleConfig()
        self._backend_lock = threading.Lock()
        self._stats = StageStats()

    @property
    def stream_detector(self) -> Any:
        """The detector streams use: the built-in one at the stream size (built on first use)."""
        with self._stream_detector_lock:
            if self._stream_detector is None:
                if self.stream_detector_config == self.detector.config:
                    self._stream_detector = self.detector
                else:
                    self._stream_detector = FaceDetector(
                        self.detector.model_path, self.stream_detector_config
                    )
            return self._stream_detector

    def scheduler(
        self, track: bool = True, smoothing: float | None = None, schedule: ScheduleConfig | None = None
    ) -> StreamScheduler:
        """A fresh per-stream tracker + scheduler from this Analyzer's settings (overrides given here)."""
        config = self.tracker_config
        if smoothing is not None:
            config = TrackerConfig(config.iou_threshold, config.max_age, smoothing)
        return StreamScheduler(config if track else None, schedule or self.schedule_config)

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
        detections = check_detections(detections)
        backend = self._require_open()
        image = to_bgr_uint8(frame)
        timings: dict[str, float] = {}
        faces = analyze_faces(
            image, detections, backend, self.manifest, timings, self._backend_lock, self.min_quality
        )
        self._add_stats(timings, faces)
        return FrameResult(
            index=index,
            timestamp=time.time() if timestamp is None else timestamp,
            faces=faces,
            timings=timings,
        )

    def _add_stats(self, timings: Mapping[str, float], faces: Sequence[FaceResult]) -> None:
        self._stats.add(timings)
        if self.min_quality > 0:
            self._stats.count(SKIPPED_LOW_QUALITY, sum(not f.inferred for f in faces))

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
        faces = analyze_faces(
            image, detections, backend, self.manifest, timings, self._backend_lock, self.min_quality
        )
        self._add_stats(timings, faces)
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
        spec = self.manifest.preprocess
        prepared = [
            prepare_faces(image, dets, spec, self.min_quality)
            for image, dets in zip(images, detections, strict=True)
        ]
        mid = time.perf_counter()
        with self._backend_lock:
            logits = infer_crops(backend, [c for p in prepared for c in p.crops], spec)
        end = time.perf_counter()
        per_frame, offset = [], 0
        for p in prepared:
            rows = slice(offset, offset + len(p.selected))
            per_frame.append(
                finish_faces(
                    p,
                    {k: v[rows] for k, v in logits.items()},
                    self.manifest.tasks,
                    self.manifest.temperatures,
                )
            )
            offset += len(p.selected)
        share = 1000.0 / len(images)
        shared = {
            "align": (mid - start) * share,
            "infer": (end - mid) * share,
            "post": (time.perf_counter() - end) * share,
        }
        results, now = [], time.time()
        for i, faces in enumerate(per_frame):
            timings = {"detect": detect_ms[i], **shared}
            self._add_stats(timings, faces)
            results.append(FrameResult(i, now, faces, timings))
        return results

    def stream(
        self,
        source: Any,
        track: bool = True,
        smoothing: float | None = None,
        schedule: ScheduleConfig | None = None,
        overlap: bool = True,
        clock: Clock | None = None,
        **stream_opts: Any,
    ) -> Iterator[FrameResult]:
        """Analyse a camera, video file, URL or iterable of frames, frame by frame.

        Every frame is detected (at the stream detector size) and tracked; the backbone runs on
        the faces the schedule picks, and every face carries its track's latest estimate with
        ``inferred`` and ``estimate_age_s`` (see :mod:`facesdk.scheduling`).

        Args:
            source: Camera index, path, URL or iterable of frames (see :class:`FrameStream`).
            track: Give faces track ids across frames. ``False`` infers every face of every frame.
            smoothing: Per-track probability smoothing factor; ``None`` uses the tracker
                config, ``0`` turns it off.
            schedule: Scheduling settings for this stream (default: the Analyzer's);
                ``ScheduleConfig(enabled=False)`` infers every face of every frame.
            overlap: Detect frame t+1 in a worker thread while the backbone runs on frame t.
            clock: ``clock() -> seconds`` called once per frame to stamp it (stream time for the
                schedule and ``FrameResult.timestamp``); default: the frame's capture time.
            **stream_opts: Passed to :class:`FrameStream` (``live``, ``queue_size``, ``opener``...).
        """
        for _, result in self.stream_frames(
            source, track, smoothing, schedule, overlap, clock, **stream_opts
        ):
            yield result

    def stream_frames(
        self,
        source: Any,
        track: bool = True,
        smoothing: float | None = None,
        schedule: ScheduleConfig | None = None,
        overlap: bool = True,
        clock: Clock | None = None,
        **stream_opts: Any,
    ) -> Iterator[tuple[np.ndarray, FrameResult]]:
        """Like :meth:`stream`, but yields ``(frame_bgr, result)`` pairs (for drawing).

        A failing source, detector or backend ends the iteration with its error; stopping
        early stops the worker and capture threads.
        """
        self._require_open()
        scheduler = self.scheduler(track, smoothing, schedule)
        frames = source if isinstance(source, FrameStream) else FrameStream(source, **stream_opts)
        label = str(source) if isinstance(source, (str, int, os.PathLike)) else None
        yield from run_stream(self, frames, scheduler, overlap=overlap, clock=clock, label=label)

    def streams(
        self,
        sources: Sequence[Any] | Mapping[str, Any],
        track: bool = True,
        smoothing: float | None = None,
        schedule: ScheduleConfig | None = None,
        **options: Any,
    ) -> MultiStream:
        """Analyse several sources at once, batching the faces of all of them into shared backbone calls.

        Each result carries its source's name in :attr:`FrameResult.source`; a failing source
        is dropped and recorded in ``.errors`` while the others keep flowing. See
        :class:`facesdk.multistream.MultiStream` for ``options`` (``on_error``, stream options).
        """
        from .multistream import MultiStream

        return MultiStream(self, sources, track=track, smoothing=smoothing, schedule=schedule, **options)

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
