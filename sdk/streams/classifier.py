"""The classifier worker: runs the backbone on the crops streams ask for, off the frame path.

Stream workers (one per source) detect, track and schedule every frame, crop the faces the
schedule says are due and :meth:`Classifier.submit` them, without waiting. The classifier's
thread takes the waiting requests in schedule order (new tracks first, then the stalest, then
better views; within a class the oldest request first; a request waiting longer than
:data:`OVERDUE_S` before all of them), up to the backend's preferred batch,
runs them through the engine in one call and delivers every estimate to its stream's scheduler,
which folds it into the track. A frame that must include its estimates (video files, by default)
waits for its own requests (:meth:`Request.wait`); a live frame does not, and its faces carry
their tracks' latest estimates.

A request of an asynchronous stream is refreshed just before its call (:attr:`Request.refresh`):
its crop is swapped for the same track's face in the stream's newest frame, so when crops queue up
(many faces, a slow CPU) an estimate is still as old as one call when it lands. In asynchronous
streams the thread and the backend's worker threads run below the frame path
(:attr:`~facesdk.streams.scheduling.ScheduleConfig.backbone_nice`).

Requests for tracks that ended while waiting are dropped unanswered. An error in the backend
fails every waiting request and is raised to the stream's caller.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..backends.threads import lower_priority
from ..engine import Engine
from ..errors import BackendError, ConfigError
from ..results import Detection, FaceResult
from .scheduling import StreamScheduler

__all__ = ["Classifier", "Request"]

logger = logging.getLogger(__name__)

OVERDUE_S = 1.0
"""A request that has waited this long goes before every newer one, whatever its class: new
tracks appearing all the time (a crowd, several cameras) cannot starve a refresh."""
JOIN_TIMEOUT_S = 10.0
"""How long closing waits for a backbone call in progress before giving up on the thread."""
HISTORY = 1024
"""Batch sizes kept in :attr:`Classifier.batches` (the most recent)."""


@dataclass(eq=False, slots=True)
class Request:
    """One face crop waiting for the backbone, and, once answered, its estimate.

    Attributes:
        scheduler: The scheduler of the stream the face belongs to (receives the estimate).
        index: The face's index among its frame's detections.
        track_id: Its track (``None`` without tracking).
        detection: The face.
        crop: The aligned crop.
        timestamp: Stream time of the frame the crop comes from.
        priority: The schedule's sort key (lower goes first).
        refresh: For asynchronous streams: called with the request just before its backbone call
            (in the classifier's thread) to swap in a crop of the same track from the stream's
            newest frame, so an estimate is as fresh as the call, not as old as the queue.
        result: The estimate (smoothed into the track) once answered.
        infer_ms: This request's share of its backbone call (ms), once answered.
        quality: The quality score of the view in ``crop`` (``None`` where not measured).
    """

    scheduler: StreamScheduler
    index: int
    track_id: int | None
    detection: Detection
    crop: np.ndarray
    timestamp: float
    priority: tuple[float, ...] = ()
    refresh: Callable[[Request], None] | None = None
    seq: int = 0
    submitted: float = 0.0
    result: FaceResult | None = None
    error: BaseException | None = None
    infer_ms: float = 0.0
    dropped: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    quality: float | None = None

    def wait(self, stop: Callable[[], bool], poll_s: float = 0.1) -> None:
        """Block until answered (or dropped), or until ``stop()`` is true; raise the request's error."""
        while not self.done.wait(poll_s):
            if stop():
                return
        if self.error is not None:
            raise self.error


class Classifier:
    """Runs requested crops through an :class:`~facesdk.engine.Engine` in a thread of its own.

    Args:
        engine: The engine whose backend runs the crops.
        batch_size: Most crops per backbone call (default: ``engine.batch_size``).
        threaded: ``False`` runs nothing in the background: :meth:`run_now` answers requests in
            the caller's thread (sequential streams).
        max_delay_ms: Once a request waits, how long to wait for more before a call that is not
            full (like Triton's ``max_queue_delay``; lets several sources share a call). ``0``
            takes what is there.
        nice: Niceness the classifier's thread and the backend's worker threads run at
            (:func:`~facesdk.backends.threads.lower_priority`; threaded only; 0: unchanged).
    """

    def __init__(
        self,
        engine: Engine,
        batch_size: int | None = None,
        threaded: bool = True,
        max_delay_ms: float = 0.0,
        nice: int = 0,
    ) -> None:
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not (isinstance(max_delay_ms, (int, float)) and 0 <= max_delay_ms < 10_000):
            raise ConfigError(
                f"max_delay_ms must be a number of milliseconds in [0, 10000), got {max_delay_ms!r}"
            )
        self.engine = engine
        self.batch_size = batch_size or engine.batch_size
        self.max_delay = max_delay_ms / 1000.0
        self.nice = nice
        self._lowered: set[int] = set()
        self.batches: deque[int] = deque(maxlen=HISTORY)
        """Crops per backbone call, the most recent :data:`HISTORY`."""
        self.error: BaseException | None = None
        self._waiting: list[Request] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._loop, name="facesdk-classifier", daemon=True)
            self._thread.start()

    def submit(self, requests: Sequence[Request]) -> None:
        """Queue requests (returns at once); with ``threaded=False`` answer them now."""
        if not requests:
            return
        now = time.perf_counter()
        for request in requests:
            request.seq, request.submitted = next(self._seq), now
        if self._thread is None:
            self.run_now(requests)
            return
        with self._cond:
            if self.error is not None or self._stop.is_set():
                self._fail(list(requests), self.error or BackendError("the stream's classifier was closed"))
                return
            self._waiting.extend(requests)
            self._cond.notify()

    def _take(self) -> list[Request]:
        """The next batch in schedule order, overdue requests first; drops requests whose track has
        ended (under the lock)."""
        now = time.perf_counter()
        self._waiting.sort(key=lambda r: (now - r.submitted < OVERDUE_S, r.priority, r.seq))
        batch: list[Request] = []
        keep: list[Request] = []
        for request in self._waiting:
            if len(batch) >= self.batch_size:
                keep.append(request)
            elif request.scheduler.wants(request.track_id):
                batch.append(request)
            else:
                request.dropped = True
                request.done.set()
        self._waiting = keep
        return batch

    def _lower_priority(self) -> None:
        """Lower this thread and the backend's worker threads not lowered yet (a runtime may start
        its threads at its first inference of a batch size: checked after every call)."""
        try:
            workers = set(getattr(self.engine.backend, "worker_threads", ()))
        except BackendError:  # closed: nothing more will run
            return
        fresh = workers - self._lowered
        if fresh or not self._lowered:
            lower_priority(self.nice, [None, *fresh])
            self._lowered |= fresh | {threading.get_native_id()}

    def _loop(self) -> None:
        if self.nice > 0:
            self._lower_priority()
        while not self._stop.is_set():
            with self._cond:
                while not self._waiting and not self._stop.is_set():
                    self._cond.wait(0.1)
                deadline = time.monotonic() + self.max_delay
                while len(self._waiting) < self.batch_size and not self._stop.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._stop.is_set():
                    break
                batch = self._take()
            if not batch:
                continue
            for request in batch:
                if request.refresh is not None:
                    try:
                        request.refresh(request)
                    except Exception:  # a refresh is an improvement: the queued crop still serves
                        logger.debug("refreshing a crop failed; the queued one is used", exc_info=True)
            try:
                self.run_now(batch)
                if self.nice > 0:
                    self._lower_priority()
            except BaseException as exc:  # handed to the streams through their requests
                with self._cond:
                    self.error = exc
                    waiting, self._waiting = self._waiting, []
                self._fail(batch + waiting, exc)
                return

    def run_now(self, requests: Sequence[Request]) -> None:
        """Run ``requests`` through the backbone in this thread and deliver their estimates."""
        start = time.perf_counter()
        faces = self.engine.classify([r.detection for r in requests], [r.crop for r in requests])
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self.batches.append(len(requests))
        self.engine.record_call(elapsed_ms, len(requests))
        end = time.perf_counter()
        for request, face in zip(requests, faces, strict=True):
            request.infer_ms = elapsed_ms / len(requests)
            request.result = request.scheduler.deliver(
                request.track_id, face, request.timestamp, end - request.submitted
            )
            request.done.set()

    @staticmethod
    def _fail(requests: Sequence[Request], error: BaseException) -> None:
        for request in requests:
            request.scheduler.cancel(request.track_id)
            request.error = error
            request.done.set()

    def close(self) -> None:
        """Stop the thread (idempotent); requests still waiting are dropped unanswered."""
        self._stop.set()
        with self._cond:
            waiting, self._waiting = self._waiting, []
            self._cond.notify_all()
        for request in waiting:
            request.scheduler.cancel(request.track_id)
            request.dropped = True
            request.done.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                logger.warning("the stream's classifier did not stop within %.0f s", JOIN_TIMEOUT_S)
