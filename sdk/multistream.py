"""Many cameras, one engine: read several sources at once and batch all their faces together.

Each source has its own :class:`~facesdk.streams.FrameStream` capture thread and a worker
thread that detects, tracks and schedules its frames (:mod:`facesdk.scheduling`) and crops
the faces picked for the backbone. One consumer (the caller's thread) takes whatever
frames are ready, from any source, and sends all their faces through the backbone in shared
calls (split at the backend's maximum batch). A slow source never holds back the others: the
consumer never waits for a particular source. A source that fails is logged, recorded in
:attr:`MultiStream.errors` and dropped; the others keep flowing.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .faces.quality import assess_faces
from .frames import to_bgr_uint8
from .pipeline import PreparedFaces, finish_faces, infer_crops, prepare_faces
from .results import FrameResult
from .scheduling import FramePlan, ScheduleConfig
from .stream_runner import put_until_stopped
from .streams import FrameStream

if TYPE_CHECKING:
    from .analyzer import Analyzer

__all__ = ["MultiStream", "source_labels"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Ready:
    """A detected, scheduled and cropped frame waiting for the shared backbone call."""

    source: str
    index: int
    timestamp: float
    plan: FramePlan
    faces: PreparedFaces  # the planned faces: their quality, which pass min_quality, their crops
    timings: dict[str, float]


@dataclass(slots=True)
class _Done:
    source: str
    error: BaseException | None


def source_labels(sources: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """Name each source: mapping keys as given; paths, URLs and camera indices as text; others ``source<i>``."""
    if isinstance(sources, Mapping):
        named = {str(k): v for k, v in sources.items()}
    else:
        named = {}
        for i, source in enumerate(sources):
            label = str(source) if isinstance(source, (str, int, os.PathLike)) else f"source{i}"
            if label in named:
                label = f"{label}#{i}"
            named[label] = source
    if not named:
        raise ConfigError("streams() needs at least one source")
    return named


class MultiStream:
    """Iterate over the results of several sources analysed by one Analyzer (see module doc).

    Args:
        analyzer: The Analyzer whose detector and backend are shared.
        sources: Sources (camera indices, paths, URLs, iterables) or a mapping ``{name: source}``.
        track: Track ids per source.
        smoothing: Per-track probability smoothing (``None``: the Analyzer's tracker config).
        schedule: Which tracked faces go to the backbone (``None``: the Analyzer's schedule).
        max_frames_per_batch: Most frames gathered into one backbone round (default: one per source).
        max_delay_ms: How long a round waits for frames of other sources once it has one (like
            Triton's ``max_queue_delay``); ``0`` takes only what is already there.
        on_error: ``"drop"`` (log, record in :attr:`errors`, keep going) or ``"raise"``.
        **stream_opts: Passed to every :class:`FrameStream`.
    """

    def __init__(
        self,
        analyzer: Analyzer,
        sources: Sequence[Any] | Mapping[str, Any],
        track: bool = True,
        smoothing: float | None = None,
        schedule: ScheduleConfig | None = None,
        max_frames_per_batch: int | None = None,
        max_delay_ms: float = 5.0,
        on_error: str = "drop",
        **stream_opts: Any,
    ) -> None:
        if on_error not in ("drop", "raise"):
            raise ConfigError(f"on_error must be 'drop' or 'raise', got {on_error!r}")
        self.analyzer = analyzer
        self.sources = source_labels(sources)
        self._schedulers = {name: analyzer.scheduler(track, smoothing, schedule) for name in self.sources}
        self._detector = analyzer.stream_detector  # built here, once, not by racing workers
        self.max_frames = max_frames_per_batch or len(self.sources)
        if max_delay_ms < 0:
            raise ConfigError(f"max_delay_ms must be >= 0, got {max_delay_ms}")
        self.max_delay = max_delay_ms / 1000.0
        self.on_error = on_error
        self.errors: dict[str, BaseException] = {}
        self.batches: list[int] = []
        """Faces per backbone round, for statistics."""
        self._queue: queue.Queue[_Ready | _Done] = queue.Queue(maxsize=2 * len(self.sources))
        self._stop = threading.Event()
        self._streams: dict[str, FrameStream] = {}
        self._threads: list[threading.Thread] = []
        for name, source in self.sources.items():
            try:
                self._streams[name] = (
                    source if isinstance(source, FrameStream) else FrameStream(source, **stream_opts)
                )
            except Exception as exc:  # an unopenable source is a dead source
                self._fail(name, exc, at_start=True)

    def _fail(self, name: str, exc: BaseException, at_start: bool = False) -> None:
        if self.on_error == "raise" and at_start:
            self.close()
            raise exc
        logger.warning("source %r failed and is dropped: %s", name, exc)
        self.errors[name] = exc

    def _put(self, item: _Ready | _Done) -> None:
        put_until_stopped(self._queue, item, self._stop)

    def _work(self, name: str, stream: FrameStream) -> None:
        """Capture -> detect -> crop for one source, feeding the shared queue."""
        detector, spec = self._detector, self.analyzer.manifest.preprocess
        scheduler = self._schedulers[name]
        error: BaseException | None = None
        try:
            for item in stream:
                if self._stop.is_set():
                    break
                image = to_bgr_uint8(item.image)
                start = time.perf_counter()
                detections = list(detector.detect(image))
                mid = time.perf_counter()
                plan = scheduler.plan(detections, item.timestamp, assess_faces(image, detections))
                measured = [plan.qualities[i] for i in plan.infer]
                faces = prepare_faces(image, plan.to_infer, spec, self.analyzer.min_quality, measured)
                timings = {
                    "decode": item.decode_ms,
                    "detect": (mid - start) * 1000.0,
                    "align": (time.perf_counter() - mid) * 1000.0,
                }
                self._put(_Ready(name, item.index, item.timestamp, plan, faces, timings))
        except BaseException as exc:  # reported to the consumer
            error = exc
        finally:
            stream.close()
            self._put(_Done(name, error))

    def _gather(self) -> list[_Ready | _Done]:
        """Block for one item, then gather more for up to ``max_delay_ms`` (at most ``max_frames`` frames)."""
        items: list[_Ready | _Done] = [self._queue.get()]
        deadline = time.monotonic() + self.max_delay
        while sum(isinstance(i, _Ready) for i in items) < self.max_frames:
            remaining = deadline - time.monotonic()
            try:
                items.append(
                    self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return items

    def _infer(self, frames: list[_Ready]) -> list[FrameResult]:
        backend = self.analyzer._require_open()
        crops = [c for f in frames for c in f.faces.crops]
        start = time.perf_counter()
        with self.analyzer._backend_lock:
            logits = infer_crops(backend, crops, self.analyzer.manifest.preprocess)
        mid = time.perf_counter()
        manifest = self.analyzer.manifest
        share = 1000.0 / len(frames)
        self.batches.append(len(crops))
        results, offset = [], 0
        for f in frames:
            rows = slice(offset, offset + len(f.faces.selected))
            offset += len(f.faces.selected)
            mine = finish_faces(
                f.faces, {k: v[rows] for k, v in logits.items()}, manifest.tasks, manifest.temperatures
            )
            merged = self._schedulers[f.source].merge(f.plan, mine)
            timings = {
                **f.timings,
                "infer": (mid - start) * share,
                "post": (time.perf_counter() - mid) * share,
            }
            self.analyzer._add_stats(timings, mine)
            results.append(FrameResult(f.index, f.timestamp, tuple(merged), timings, source=f.source))
        return results

    def __iter__(self) -> Iterator[FrameResult]:
        if not self._threads:
            for name, stream in self._streams.items():
                thread = threading.Thread(
                    target=self._work, args=(name, stream), name=f"facesdk-multi-{name}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        live = len(self._threads)
        try:
            while live:
                items = self._gather()
                frames = [i for i in items if isinstance(i, _Ready)]
                if frames:
                    yield from self._infer(frames)
                for done in (i for i in items if isinstance(i, _Done)):
                    live -= 1
                    if done.error is not None:
                        self._fail(done.source, done.error)
                        if self.on_error == "raise":
                            raise done.error
        finally:
            self.close()

    def close(self) -> None:
        """Stop every capture and worker thread (idempotent)."""
        self._stop.set()
        for stream in self._streams.values():
            stream.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5.0)

    def __enter__(self) -> MultiStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
