"""One stream's pipeline: detect + track + schedule (stage A), then backbone + merge (stage B).

With ``overlap`` on, stage A runs in a worker thread one frame ahead of stage B, which runs
in the caller's thread: detection of frame t+1 overlaps the backbone on frame t. The two
meet in a bounded queue (``depth`` frames), so results stay in frame order and a slow
backbone holds the worker back; a live :class:`~facesdk.streams.FrameStream` then drops its
oldest frames as before. An error in the source, the detector or the backend ends the
iteration with that error; stopping early (``break``, ``close()``) stops and joins the
worker and the capture thread.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .faces.quality import assess_faces
from .frames import to_bgr_uint8
from .pipeline import analyze_faces
from .results import FrameResult
from .scheduling import FramePlan, StreamScheduler
from .streams import FrameStream, StreamFrame

if TYPE_CHECKING:
    from .analyzer import Analyzer

__all__ = ["put_until_stopped", "run_stream"]

logger = logging.getLogger(__name__)

_END = object()
JOIN_TIMEOUT_S = 10.0
"""How long closing a stream waits for its worker (a detector call in progress) before giving up."""
Clock = Callable[[], float]


def put_until_stopped(into: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    """Put ``item`` into a bounded queue, waiting while it is full, unless ``stop`` is set first."""
    while not stop.is_set():
        try:
            into.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


@dataclass(slots=True)
class _Prepared:
    """A detected, tracked and scheduled frame waiting for the backbone."""

    index: int
    timestamp: float
    image: np.ndarray
    plan: FramePlan
    timings: dict[str, float]


@dataclass(slots=True)
class _Failed:
    error: BaseException


class _Stages:
    """Stage A (:meth:`prepare`) and stage B (:meth:`finish`) of one stream."""

    def __init__(
        self, analyzer: Analyzer, scheduler: StreamScheduler, clock: Clock | None, label: str | None
    ) -> None:
        self.analyzer, self.scheduler, self.clock, self.label = analyzer, scheduler, clock, label
        self.detector = analyzer.stream_detector

    def prepare(self, item: StreamFrame) -> _Prepared:
        image = to_bgr_uint8(item.image)
        timestamp = self.clock() if self.clock is not None else item.timestamp
        start = time.perf_counter()
        detections = list(self.detector.detect(image))
        mid = time.perf_counter()
        qualities = assess_faces(image, detections)  # every face's, also those not inferred now
        timings = {
            "decode": item.decode_ms,
            "detect": (mid - start) * 1000.0,
            "quality": (time.perf_counter() - mid) * 1000.0,
        }
        plan = self.scheduler.plan(detections, timestamp, qualities)
        return _Prepared(item.index, timestamp, image, plan, timings)

    def finish(self, prepared: _Prepared) -> tuple[np.ndarray, FrameResult]:
        analyzer, plan, timings = self.analyzer, prepared.plan, prepared.timings
        backend = analyzer._require_open()
        if plan.infer:
            inferred = analyze_faces(
                prepared.image,
                plan.to_infer,
                backend,
                analyzer.manifest,
                timings,
                analyzer._backend_lock,
                analyzer.min_quality,  # a face below it keeps its track's last estimate (merge)
                [plan.qualities[i] for i in plan.infer],  # measured in prepare(), not again
            )
        else:
            inferred = ()
            timings.update(align=0.0, infer=0.0, post=0.0)
        timings["align"] = timings.get("align", 0.0) + timings.pop("quality", 0.0)  # quality is align work
        faces = self.scheduler.merge(plan, inferred)
        analyzer._add_stats(timings, inferred)  # counts the faces skipped for low quality
        result = FrameResult(prepared.index, prepared.timestamp, faces, timings, source=self.label)
        return prepared.image, result


class _Ahead:
    """Runs stage A over a frame source in a worker thread, ``depth`` frames ahead at most."""

    def __init__(self, frames: FrameStream, prepare: Callable[[StreamFrame], _Prepared], depth: int) -> None:
        self._frames, self._prepare = frames, prepare
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="facesdk-stream-detect", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        put_until_stopped(self._queue, item, self._stop)

    def _run(self) -> None:
        try:
            for item in self._frames:
                if self._stop.is_set():
                    break
                self._put(self._prepare(item))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Failed(exc))
        finally:
            self._put(_END)

    def __iter__(self) -> Iterator[_Prepared]:
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    return
                continue
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the worker and the source, and wait for the worker (idempotent)."""
        self._stop.set()
        self._frames.close()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while self._thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
            self._thread.join(timeout=0.05)
        if self._thread.is_alive():
            logger.warning("the stream's detect worker did not stop within %.0f s", JOIN_TIMEOUT_S)


def run_stream(
    analyzer: Analyzer,
    frames: FrameStream,
    scheduler: StreamScheduler,
    overlap: bool = True,
    clock: Clock | None = None,
    label: str | None = None,
    depth: int = 1,
) -> Iterator[tuple[np.ndarray, FrameResult]]:
    """Yield ``(frame_bgr, result)`` for every frame of ``frames`` in order (see module doc)."""
    stages = _Stages(analyzer, scheduler, clock, label)
    if not overlap:
        with frames:
            for item in frames:
                yield stages.finish(stages.prepare(item))
        return
    ahead = _Ahead(frames, stages.prepare, depth)
    try:
        for prepared in ahead:
            yield stages.finish(prepared)
    finally:
        ahead.close()
