"""One stream runner for one source or many: capture -> detect -> track -> label, classifier aside.

Each source (a *lane*) has its capture thread (:class:`~facesdk.streams.sources.FrameStream`)
and a worker thread that converts, detects, measures quality, tracks and schedules every frame,
crops the faces that are due and hands them to the one :class:`~facesdk.streams.classifier.
Classifier` of the run, which batches the crops of every source into shared backbone calls (as
many at once as the engine allows; the second and further only while no source drops frames). The
caller's thread takes the planned frames in order and labels every face with its track's latest
estimate.

Two modes, per source:

- *asynchronous* (the default for live sources: cameras, URLs, ``live=True``): the frame path
  never waits for the backbone; estimates join their tracks when they land, and a face whose
  track has none yet says so (``FaceResult.estimated`` is false).
- *waiting* (the default for video files and iterables, and whenever every face of every frame
  is inferred): each frame waits for the estimates its schedule asked for, so its result includes
  them (``inferred`` true on the faces inferred from it).

Results of one source come in frame order. A failing source ends the iteration with its error
(one source; ``on_error="raise"``) or is dropped and recorded in :attr:`MultiStream.errors`
while the others flow (``on_error="drop"``, the default of :meth:`Analyzer.streams`). An error
of the backbone ends the iteration. Stopping early (``break``, ``close()``) stops every thread.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends.threads import usable_cores
from ..engine import Engine
from ..errors import ConfigError
from ..faces.align import crop_faces
from ..faces.quality import assess_faces
from ..frames import to_bgr_uint8
from ..results import FrameResult, Quality
from .classifier import CALM_S, Classifier, Request
from .scheduling import BETTER_VIEW, FramePlan, StreamScheduler
from .sources import FrameStream, StreamFrame

__all__ = ["Clock", "MultiStream", "StreamRun", "put_until_stopped", "source_labels"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
JOIN_TIMEOUT_S = 10.0
"""How long closing a stream waits for each worker (a detector call in progress) before giving up."""
POLL_S = 0.1
"""How often a blocked wait looks at the stop signal."""


FRAME_PATH_SHARE = 0.5
"""Share of the usable cores the live sources' frame path may take while the classifier runs a
second backbone call beside the first: a saturated frame path (four 1280 x 720 cameras at 15
frames/s on 2 cores) has no cores or cache to spare for it, while one camera with six faces leaves
most of them idle (docs/benchmarks/stream.md, "one call or two")."""


def put_until_stopped(into: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item`` into a bounded queue, waiting while it is full, unless ``stop`` is set first."""
    while not stop.is_set():
        try:
            into.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def source_labels(sources: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """Name each source: mapping keys as given; paths, URLs and camera indices as text; others ``source<i>``.

    The same iterator or :class:`FrameStream` given twice is refused: two workers would share it
    (a list or another re-iterable collection may be given twice).
    """
    if isinstance(sources, (str, bytes, os.PathLike)) or not isinstance(sources, (Sequence, Mapping)):
        raise ConfigError(
            f"streams() takes a list of sources or a mapping {{name: source}}, got {type(sources).__name__}"
        )
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
    seen: dict[int, str] = {}
    for label, source in named.items():
        if not isinstance(source, FrameStream) and (
            isinstance(source, (str, int, os.PathLike)) or not _is_iterator(source)
        ):
            continue
        if id(source) in seen:
            raise ConfigError(
                f"sources {seen[id(source)]!r} and {label!r} are the same object: one iterator or FrameStream "
                "can feed one source only (give each source its own)"
            )
        seen[id(source)] = label
    return named


def _score(quality: Quality | None) -> float | None:
    return None if quality is None else quality.score


def _is_iterator(source: Any) -> bool:
    try:
        return iter(source) is source
    except TypeError:
        return False


@dataclass(slots=True)
class _Lane:
    """One source of a run: its frames, scheduler, mode and worker."""

    name: str
    label: str | None
    frames: FrameStream
    scheduler: StreamScheduler
    wait: bool
    thread: threading.Thread | None = None
    latest: tuple[float, np.ndarray, FramePlan] | None = None
    """The newest planned frame (asynchronous lanes): what a queued crop is refreshed from."""


@dataclass(slots=True)
class _Planned:
    """A detected, tracked and scheduled frame whose due crops are with the classifier."""

    lane: _Lane
    index: int
    timestamp: float
    image: np.ndarray
    plan: FramePlan
    requests: list[Request]
    timings: dict[str, float]


@dataclass(slots=True)
class _Done:
    lane: _Lane
    error: BaseException | None


class StreamRun:
    """Runs lanes through one engine and yields ``(frame_bgr, FrameResult)`` (see module doc).

    Args:
        engine: The engine (backend, call slots, statistics).
        detector: Anything with ``detect(frame) -> [Detection]``.
        lanes: ``name -> (FrameStream, StreamScheduler, wait, label)``.
        overlap: Detect in worker threads and classify in classifier threads; ``False`` runs one
            source sequentially in the caller's thread (waiting mode only).
        clock: ``clock() -> seconds`` stamps each frame instead of its capture time.
        on_error: ``"raise"`` or ``"drop"`` (see module doc).
        batch_size: Most crops per backbone call (default: the engine's).
        max_delay_ms: How long the classifier waits for more crops before a call that is not full.
    """

    def __init__(
        self,
        engine: Engine,
        detector: Any,
        lanes: Mapping[str, tuple[FrameStream, StreamScheduler, bool, str | None]],
        overlap: bool = True,
        clock: Clock | None = None,
        on_error: str = "raise",
        batch_size: int | None = None,
        max_delay_ms: float = 0.0,
    ) -> None:
        if on_error not in ("drop", "raise"):
            raise ConfigError(f"on_error must be 'drop' or 'raise', got {on_error!r}")
        self.engine, self.detector, self.clock, self.on_error = engine, detector, clock, on_error
        self.overlap = overlap
        self.lanes = [_Lane(name, label, f, s, w) for name, (f, s, w, label) in lanes.items()]
        if not overlap and (len(self.lanes) != 1 or not self.lanes[0].wait):
            raise ConfigError("overlap=False runs one source in waiting mode only (wait=True, one source)")
        self.errors: dict[str, BaseException] = {}
        # the frame path goes first only where it does not wait for the backbone anyway
        nices = {lane.scheduler.schedule.backbone_nice for lane in self.lanes if not lane.wait}
        self._drops = (0, time.monotonic() - CALM_S)  # (frames the sources dropped, when that last grew)
        self._busy: deque[tuple[float, float]] = deque()  # (when, seconds) of each live frame's path
        self._first_busy: float | None = None  # when the first live frame's path began
        self._drops_lock = threading.Lock()
        self.classifier = Classifier(
            engine,
            batch_size,
            threaded=overlap,
            max_delay_ms=max_delay_ms,
            nice=min(nices, default=0),
            extra_calls_allowed=self._frame_path_keeps_up,
        )
        self._queue: queue.Queue[_Planned | _Done] = queue.Queue(maxsize=max(1, 2 * len(self.lanes) - 1))
        self._stop = threading.Event()
        self._started = False
        self._closed = False

    def _frame_path_keeps_up(self) -> bool:
        """Whether the live sources' frame path leaves room for another backbone call: no source
        has dropped a frame for :data:`CALM_S`, and over the last :data:`CALM_S` (or since the
        first live frame) their frames took at most :data:`FRAME_PATH_SHARE` of the usable cores
        (detect, quality, track, crop: wall time, so a frame path slowed by the backbone counts
        more). The classifier's extra calls wait otherwise; a file's frames (waiting mode) never
        hold them back."""
        dropped = sum(getattr(lane.frames, "dropped", 0) for lane in self.lanes)
        now = time.monotonic()
        with self._drops_lock:
            seen, since = self._drops
            if dropped != seen:
                self._drops = dropped, now
                return False
            while self._busy and self._busy[0][0] < now - CALM_S:
                self._busy.popleft()
            window = CALM_S if self._first_busy is None else min(CALM_S, now - self._first_busy)
            load = sum(seconds for _, seconds in self._busy) / max(window, 1e-3)
            return now - since >= CALM_S and load <= FRAME_PATH_SHARE * usable_cores()

    # ------------------------------------------------------------------ the frame path (workers)
    def _plan(self, lane: _Lane, item: StreamFrame) -> _Planned:
        image = to_bgr_uint8(item.image)
        timestamp = self.clock() if self.clock is not None else item.timestamp
        start = time.perf_counter()
        detections = list(self.detector.detect(image))
        mid = time.perf_counter()
        qualities = assess_faces(image, detections)
        plan = lane.scheduler.plan(detections, timestamp, qualities)
        crops = crop_faces(image, plan.to_infer, self.engine.manifest.preprocess)
        refresh = None
        if not lane.wait and lane.scheduler.tracking:
            lane.latest = (timestamp, image, plan)
            refresh = functools.partial(self._refresh, lane)
        requests = [
            Request(lane.scheduler, i, plan.track_ids[i], plan.detections[i], crop, timestamp, key, refresh,
                    quality=_score(plan.quality(i)))
            for i, crop, key in zip(plan.infer, crops, plan.priorities, strict=True)
        ]  # fmt: skip
        timings = {
            "decode": item.decode_ms,
            "detect": (mid - start) * 1000.0,
            "align": (time.perf_counter() - mid) * 1000.0,
        }
        if not lane.wait:
            busy, now = time.perf_counter() - start, time.monotonic()
            with self._drops_lock:
                self._busy.append((now, busy))
                if self._first_busy is None:
                    self._first_busy = now - busy
        self.classifier.submit(requests)
        return _Planned(lane, item.index, timestamp, image, plan, requests, timings)

    def _refresh(self, lane: _Lane, request: Request) -> None:
        """Swap a queued request's crop for its track's face in the lane's newest frame (if newer,
        at or above ``min_quality``, and, for a request made for a clearly better view, at least as
        good as that view).

        Runs in the classifier's thread just before the backbone call: a queue of requests then
        costs no freshness (the estimate is as old as the call, not as old as the wait)."""
        latest = lane.latest
        if latest is None or latest[0] <= request.timestamp:
            return
        timestamp, image, plan = latest
        try:
            i = plan.track_ids.index(request.track_id)
        except ValueError:
            return  # not in the newest frame (occluded for a moment): the queued view serves
        quality = _score(plan.quality(i))
        if quality is not None and quality < lane.scheduler.min_quality:
            return  # a view the schedule would not send (blurred, turned away): the queued one serves
        better_view = request.priority[:1] == (BETTER_VIEW,)
        if better_view and quality is not None and request.quality is not None and quality < request.quality:
            return  # asked for because this view was clearly better: a newer, worse one would undo that
        detection = plan.detections[i]
        (crop,) = crop_faces(image, [detection], self.engine.manifest.preprocess)
        request.detection, request.crop, request.timestamp = detection, crop, timestamp
        request.quality = quality

    def _work(self, lane: _Lane) -> None:
        error: BaseException | None = None
        try:
            for item in lane.frames:
                if self._stop.is_set():
                    break
                if not put_until_stopped(self._queue, self._plan(lane, item), self._stop):
                    break
        except BaseException as exc:  # handed to the caller's thread
            error = exc
        finally:
            lane.frames.close()
            put_until_stopped(self._queue, _Done(lane, error), self._stop)

    # ------------------------------------------------------------------ the caller's thread
    def _label(self, planned: _Planned) -> tuple[np.ndarray, FrameResult]:
        lane, timings = planned.lane, planned.timings
        if lane.wait:
            start = time.perf_counter()
            for request in planned.requests:
                request.wait(self._stop.is_set)
            timings["wait"] = (time.perf_counter() - start) * 1000.0
        if self.classifier.error is not None:
            raise self.classifier.error
        delivered = {  # a refreshed request answers for a newer frame: its track carries it there
            r.index: r.result
            for r in planned.requests
            if r.result is not None and r.timestamp == planned.timestamp
        }
        if lane.wait:
            timings["infer"] = sum(r.infer_ms for r in planned.requests)
        start = time.perf_counter()
        faces = lane.scheduler.label(planned.plan, delivered)
        timings["post"] = (time.perf_counter() - start) * 1000.0
        self.engine.record(timings, planned.plan.skipped)
        result = FrameResult(planned.index, planned.timestamp, faces, timings, source=lane.label)
        return planned.image, result

    def _sequential(self) -> Iterator[tuple[np.ndarray, FrameResult]]:
        lane = self.lanes[0]
        with lane.frames:
            for item in lane.frames:
                yield self._label(self._plan(lane, item))

    def _fail(self, lane: _Lane, error: BaseException) -> None:
        logger.warning("source %r failed and is dropped: %s", lane.name, error)
        self.errors[lane.name] = error
        if self.on_error == "raise":
            raise error

    def __iter__(self) -> Iterator[tuple[np.ndarray, FrameResult]]:
        if self._started or self._closed:
            raise ConfigError(
                "this stream was iterated already; a stream runs once (call stream()/streams() again)"
            )
        self._started = True
        try:
            if not self.overlap:
                yield from self._sequential()
                return
            for lane in self.lanes:
                lane.thread = threading.Thread(
                    target=self._work, args=(lane,), name=f"facesdk-stream-{lane.name}", daemon=True
                )
                lane.thread.start()
            live = len(self.lanes)
            while live:
                try:
                    item = self._queue.get(timeout=POLL_S)
                except queue.Empty:
                    if self.classifier.error is not None:
                        raise self.classifier.error from None
                    if self._stop.is_set():  # closed from another thread
                        return
                    continue
                if isinstance(item, _Done):
                    live -= 1
                    if item.error is not None:
                        self._fail(item.lane, item.error)
                    continue
                yield self._label(item)
        finally:
            self.close()

    def close(self) -> None:
        """Stop every capture, worker and classifier thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for lane in self.lanes:
            lane.frames.close()
        self.classifier.close()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for lane in self.lanes:
            thread = lane.thread
            while thread is not None and thread.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):  # unblock a worker waiting to put
                    self._queue.get_nowait()
                thread.join(POLL_S / 2)
            if thread is not None and thread.is_alive():
                logger.warning(
                    "the stream worker of %r did not stop within %.0f s", lane.name, JOIN_TIMEOUT_S
                )


class MultiStream:
    """The results of several sources analysed together (:meth:`Analyzer.streams`).

    Iterate once for :class:`FrameResult`\\ s (each with its source's name in ``source``), or
    :meth:`frames` for ``(frame_bgr, result)`` pairs. A second iteration raises
    :class:`~facesdk.errors.ConfigError`; ``close()`` (or leaving a ``with`` block) stops every
    thread.

    Attributes:
        sources: ``name -> source`` as given.
        errors: ``name -> error`` of every source that failed and was dropped.
        batches: Crops per backbone call, the most recent 1024.
    """

    def __init__(self, run: StreamRun, sources: Mapping[str, Any]) -> None:
        self._run = run
        self.sources = dict(sources)

    @property
    def errors(self) -> dict[str, BaseException]:
        return self._run.errors

    @property
    def batches(self) -> Sequence[int]:
        return self._run.classifier.batches

    def frames(self) -> Iterator[tuple[np.ndarray, FrameResult]]:
        """``(frame_bgr, result)`` pairs of every source, each source in frame order."""
        return iter(self._run)

    def __iter__(self) -> Iterator[FrameResult]:
        for _, result in self._run:
            yield result

    def close(self) -> None:
        """Stop every capture, worker and classifier thread (idempotent)."""
        self._run.close()

    def __enter__(self) -> MultiStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
