"""The runtime entry point: ``Analyzer(model).analyze(frame) -> FrameResult``.

The Analyzer loads the model and the detector and drives one :class:`~facesdk.engine.Engine`
(backend, lock, statistics) from every entry point: single images (:meth:`Analyzer.analyze`,
:meth:`~Analyzer.analyze_batch`, :meth:`~Analyzer.analyze_detections`) and streams
(:meth:`~Analyzer.stream`, :meth:`~Analyzer.stream_frames`, :meth:`~Analyzer.streams`, run by
:mod:`facesdk.streams.runner`).

Thread safety: one Analyzer may be shared by several threads. The detector serialises its
own calls; the engine serialises backend calls, so batches never interleave; statistics
are locked. Cropping and post-processing run concurrently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .arguments import check_detections, check_model_arg
from .backends.base import Backend, create_backend
from .engine import Engine
from .errors import ConfigError, SourceError
from .faces.analysis import check_min_quality
from .faces.detector import DetectorConfig, FaceDetector, stream_config
from .frames import to_bgr_uint8
from .model_loader import resolve_model
from .results import Detection, FrameResult
from .streams.runner import Clock, MultiStream, StreamRun, source_labels
from .streams.scheduling import ScheduleConfig, StreamScheduler
from .streams.sources import FrameStream
from .streams.tracking import TrackerConfig

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
        min_quality = check_min_quality(min_quality)
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
        created = create_backend(
            resolved.backend, self.manifest, resolved.path, **{**resolved.options, **backend_opts}
        )
        describe = getattr(created, "describe", None)
        why = f" ({resolved.reason})" if resolved.reason else ""
        logger.info("analyzer backend: %s%s", describe() if describe else created.name, why)
        self.engine = Engine(created, self.manifest, min_quality)
        """The runtime core every entry point drives (backend, lock, statistics)."""
        self.tracker_config = tracker or TrackerConfig()
        self.schedule_config = schedule or ScheduleConfig()

    @property
    def min_quality(self) -> float:
        return self.engine.min_quality

    @property
    def backend(self) -> Backend | None:
        """The inference backend (``None`` once closed)."""
        return None if self.engine.closed else self.engine.backend

    @backend.setter
    def backend(self, backend: Backend) -> None:
        """Run on another backend from now on (the previous one stays open: the new one may wrap it)."""
        self.engine.replace_backend(backend)

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
        self,
        track: bool = True,
        smoothing: float | None = None,
        schedule: ScheduleConfig | None = None,
        anticipate: bool = False,
    ) -> StreamScheduler:
        """A fresh per-stream tracker + scheduler from this Analyzer's settings (overrides given here)."""
        config = self.tracker_config
        if smoothing is not None:
            config = TrackerConfig(config.iou_threshold, config.max_age, smoothing)
        return StreamScheduler(
            config if track else None, schedule or self.schedule_config, self.min_quality, anticipate
        )

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.manifest.tasks)

    def _result(
        self, images: list[np.ndarray], detections: list[Any], detect_ms: list[float]
    ) -> list[FrameResult]:
        """Analyse the frames' detections in one engine call; timings shared evenly by the frames."""
        shared: dict[str, float] = {}
        per_frame = self.engine.analyze_many(images, detections, shared)
        share = 1.0 / len(images)
        results, now = [], time.time()
        for i, faces in enumerate(per_frame):
            timings = {"detect": detect_ms[i], **{k: v * share for k, v in shared.items()}}
            self.engine.record(timings, sum(not f.inferred for f in faces))
            results.append(FrameResult(i, now, faces, timings))
        return results

    def analyze_detections(
        self, frame: Any, detections: Sequence[Detection], index: int = 0, timestamp: float | None = None
    ) -> FrameResult:
        """Analyse given faces (e.g. a dataset's boxes) without running the detector."""
        detections = check_detections(detections)
        self.engine.backend  # noqa: B018 - raises once closed, before any work
        result = self._result([to_bgr_uint8(frame)], [detections], [0.0])[0]
        timings = {k: v for k, v in result.timings.items() if k != "detect"}
        return FrameResult(index, time.time() if timestamp is None else timestamp, result.faces, timings)

    def analyze(self, frame: Any, index: int = 0, timestamp: float | None = None) -> FrameResult:
        """Detect every face of one frame and read their attributes (one batched backend call).

        Args:
            frame: uint8 BGR image (grayscale, BGRA, float and uint16 are converted; see
                :func:`facesdk.frames.to_bgr_uint8`).
            index: Frame index recorded in the result.
            timestamp: Capture time recorded in the result (default: now).
        """
        result = self.analyze_batch([frame])[0]
        return FrameResult(
            index, time.time() if timestamp is None else timestamp, result.faces, result.timings
        )

    def analyze_batch(self, frames: Iterable[Any]) -> list[FrameResult]:
        """Analyse independent frames (indices 0..n-1, no tracking) with one batched inference.

        The faces of all frames go through the backend together (split at its max batch);
        ``align``, ``infer`` and ``post`` timings are the batch's, shared evenly by its frames.
        """
        self.engine.backend  # noqa: B018 - raises once closed, before any work
        images = [to_bgr_uint8(frame) for frame in frames]
        if not images:
            return []
        detections, detect_ms = [], []
        for image in images:
            start = time.perf_counter()
            detections.append(self.detector.detect(image))
            detect_ms.append((time.perf_counter() - start) * 1000.0)
        return self._result(images, detections, detect_ms)

    def stream(
        self,
        source: Any,
        track: bool = True,
        smoothing: float | None = None,
        schedule: ScheduleConfig | None = None,
        overlap: bool = True,
        clock: Clock | None = None,
        wait: bool | None = None,
        batch_size: int | None = None,
        **stream_opts: Any,
    ) -> Iterator[FrameResult]:
        """Analyse a camera, video file, URL or iterable of frames, frame by frame.

        Every frame is detected (at the stream detector size) and tracked; the backbone runs on
        the faces the schedule picks, off the frame path, and every face carries its track's
        latest estimate with ``inferred`` and ``estimate_age_s`` (see :mod:`facesdk.streams`).

        Args:
            source: Camera index, path, URL or iterable of frames (see :class:`FrameStream`).
            track: Give faces track ids across frames. ``False`` infers every face of every frame.
            smoothing: Per-track probability smoothing factor; ``None`` uses the tracker
                config, ``0`` turns it off.
            schedule: Scheduling settings for this stream (default: the Analyzer's);
                ``ScheduleConfig(enabled=False)`` infers every face of every frame.
            overlap: Detect and classify in worker threads (detection of frame t+1 overlaps the
                backbone on frame t); ``False`` runs everything in the caller's thread (waiting mode).
            clock: ``clock() -> seconds`` called once per frame to stamp it (stream time for the
                schedule and ``FrameResult.timestamp``); default: the frame's capture time.
            wait: Make each frame wait for the estimates its schedule asked for (``True``), or never
                wait for the backbone (``False``: estimates join their tracks when they land).
                ``None`` (default): asynchronous for live sources (cameras, URLs, ``live=True``),
                waiting for files and iterables, and always waiting without tracking or scheduling.
            batch_size: Most crops per backbone call (default: what the backend runs best:
                OpenVINO's largest compiled batch, else 8). Smaller batches land a new face's
                first estimate sooner and hold less memory; larger ones help runtimes that batch well.
            **stream_opts: Passed to :class:`FrameStream` (``live``, ``queue_size``, ``opener``...).
        """
        for _, result in self.stream_frames(
            source, track, smoothing, schedule, overlap, clock, wait, batch_size, **stream_opts
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
        wait: bool | None = None,
        batch_size: int | None = None,
        **stream_opts: Any,
    ) -> Iterator[tuple[np.ndarray, FrameResult]]:
        """Like :meth:`stream`, but yields ``(frame_bgr, result)`` pairs (for drawing).

        A failing source, detector or backend ends the iteration with its error; stopping
        early stops the worker, classifier and capture threads.
        """
        label = str(source) if isinstance(source, (str, int, os.PathLike)) else None
        name = label or "source0"
        run = self._run(
            {name: source}, track, smoothing, schedule, overlap, clock, wait, "raise", stream_opts, batch_size
        )
        run.lanes[0].label = label
        yield from run

    def streams(
        self,
        sources: Sequence[Any] | Mapping[str, Any],
        track: bool = True,
        smoothing: float | None = None,
        schedule: ScheduleConfig | None = None,
        overlap: bool = True,
        clock: Clock | None = None,
        wait: bool | None = None,
        on_error: str = "drop",
        batch_size: int | None = None,
        max_delay_ms: float = 5.0,
        **stream_opts: Any,
    ) -> MultiStream:
        """Analyse several sources at once, batching the faces of all of them into shared backbone calls.

        Takes the options of :meth:`stream` (``overlap=False`` only for one source), plus
        ``on_error`` (``"drop"``: a failing source is logged, recorded in ``.errors`` and
        dropped while the others flow; ``"raise"``: its error ends the iteration) and
        ``batch_size`` (most crops per backbone call; default: what the backend runs best) and
        ``max_delay_ms`` (how long the backbone waits for crops of other sources before a call
        that is not full, like Triton's ``max_queue_delay``; default 5 ms).
        Each result carries its source's name in :attr:`FrameResult.source`.
        """
        named = source_labels(sources)
        run = self._run(
            named,
            track,
            smoothing,
            schedule,
            overlap,
            clock,
            wait,
            on_error,
            stream_opts,
            batch_size,
            max_delay_ms,
        )
        return MultiStream(run, named)

    def _run(
        self,
        sources: Mapping[str, Any],
        track: bool,
        smoothing: float | None,
        schedule: ScheduleConfig | None,
        overlap: bool,
        clock: Clock | None,
        wait: bool | None,
        on_error: str,
        stream_opts: Mapping[str, Any],
        batch_size: int | None = None,
        max_delay_ms: float = 0.0,
    ) -> StreamRun:
        """Open every source and build the run (sources fail here, before any thread starts)."""
        self.engine.backend  # noqa: B018 - raises once closed
        schedule = schedule or self.schedule_config
        every_face = not track or not schedule.enabled
        if wait is False and (every_face or not overlap):
            raise ConfigError(
                "wait=False needs tracking, scheduling and overlap: without them every face of every "
                "frame is inferred and each frame waits for its faces"
            )
        detector = self.stream_detector
        lanes: dict[str, tuple[FrameStream, StreamScheduler, bool, str | None]] = {}
        opened: list[FrameStream] = []
        failed: dict[str, BaseException] = {}
        try:
            for name, source in sources.items():
                try:
                    frames = source if isinstance(source, FrameStream) else FrameStream(source, **stream_opts)
                except SourceError as exc:
                    if on_error == "raise":
                        raise
                    logger.warning("source %r cannot be opened and is dropped: %s", name, exc)
                    failed[name] = exc
                    continue
                opened.append(frames)
                waits = every_face or not overlap or (not frames.live if wait is None else wait)
                scheduler = self.scheduler(track, smoothing, schedule, anticipate=not waits)
                lanes[name] = (frames, scheduler, waits, name)
            run = StreamRun(self.engine, detector, lanes, overlap, clock, on_error, batch_size, max_delay_ms)
        except BaseException:  # a refused option or source: release what was opened
            for frames in opened:
                frames.close()
            raise
        run.errors.update(failed)
        return run

    def stats(self) -> dict[str, dict[str, float]]:
        """Live per-stage timing statistics (ms): decode, detect, align, infer, post (per frame),
        ``wait`` (a waiting stream's frame waiting for its estimates) and ``classify`` (per backbone
        call of a stream's classifier), plus event counters."""
        return self.engine.stats()

    def reset_stats(self) -> None:
        """Forget the timing statistics so far (e.g. after a warm-up)."""
        self.engine.reset_stats()

    def close(self) -> None:
        """Release the backend (idempotent)."""
        self.engine.close()

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()
