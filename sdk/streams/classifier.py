"""The classifier worker: runs the backbone on the crops streams ask for, off the frame path.

Stream workers (one per source) detect, track and schedule every frame, crop the faces the
schedule says are due and :meth:`Classifier.submit` them, without waiting. Each of the
classifier's threads (one per backend call the engine runs at once,
:attr:`~facesdk.engine.Engine.parallel_calls`: two for ONNX Runtime on a CPU, whose second call
fills the cores the first leaves idle) takes the waiting requests in schedule order (new tracks
first, then the stalest, then better views; within a class the oldest request first; a request
waiting longer than :data:`OVERDUE_S` before all of them), up to the backend's preferred batch,
runs them through the engine in one call and delivers every estimate to its stream's scheduler,
which folds it into the track (a track has one request at a time, so its estimates land in order). A frame that must include its estimates (video files, by default)
waits for its own requests (:meth:`Request.wait`); a live frame does not, and its faces carry
their tracks' latest estimates.

A request of an asynchronous stream is refreshed just before its call (:attr:`Request.refresh`):
its crop is swapped for the same track's face in the stream's newest frame, so when crops queue up
(many faces, a slow CPU) an estimate is still as old as one call when it lands. In asynchronous
streams the threads and the backend's worker threads run below the frame path
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
CALM_S = 2.0
"""A stream's second and further backbone calls start only after this long without a dropped
frame (:attr:`Classifier.extra_calls_allowed`): on a CPU the frame path and the backbone share,
a second call costs the frame path cache and cores it may not have to spare."""
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
    """Runs requested crops through an :class:`~facesdk.engine.Engine` in threads of its own.

    Args:
        engine: The engine whose backend runs the crops.
        batch_size: Most crops per backbone call (default: ``engine.batch_size``).
        threaded: ``False`` runs nothing in the background: :meth:`run_now` answers requests in
            the caller's thread (sequential streams).
        workers: Threads that each take a batch and call the backbone (default:
            ``engine.parallel_calls``; more than the engine allows at once only wait).
        extra_calls_allowed: Asked before each call of the second and further workers; while it
            says no, they wait (the runner's: no frame dropped for :data:`CALM_S`). ``None``:
            always allowed.
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
        workers: int | None = None,
        extra_calls_allowed: Callable[[], bool] | None = None,
    ) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
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
        self.extra_calls_allowed = extra_calls_allowed
        self._lowered: set[int] = set()
        self._lowering = threading.Lock()
        self.batches: deque[int] = deque(maxlen=HISTORY)
        """Crops per backbone call, the most recent :data:`HISTORY`."""
        self.error: BaseException | None = None
        self._waiting: list[Request] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        if threaded:
            count = workers or engine.parallel_calls
            self._threads = [
                threading.Thread(target=self._loop, args=(i,), name=f"facesdk-classifier-{i}", daemon=True)
                for i in range(count)
            ]
            for thread in self._threads:
                thread.start()

    @property
    def workers(self) -> int:
        """Threads calling the backbone (0: requests are answered in the submitting thread)."""
        return len(self._threads)

    def submit(self, requests: Sequence[Request]) -> None:
        """Queue requests (returns at once); with ``threaded=False`` answer them now."""
        if not requests:
            return
        now = time.perf_counter()
        for request in requests:
            request.seq, request.submitted = next(self._seq), now
        if not self._threads:
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

    def _lower_priority(self, this_thread: bool) -> None:
        """Lower the backend's worker threads not lowered yet (a runtime may start its threads at its
        first inference of a batch size: checked after every call), and this thread if asked."""
        try:
            workers = set(getattr(self.engine.backend, "worker_threads", ()))
        except BackendError:  # closed: nothing more will run
            workers = set()
        with self._lowering:
            fresh = workers - self._lowered
            targets: list[int | None] = [*([None] if this_thread else []), *fresh]
            if targets:
                lower_priority(self.nice, targets)
                self._lowered |= fresh

    def _held_back(self, worker: int) -> bool:
        """Whether this worker, an extra one, must not start a call now."""
        allowed = self.extra_calls_allowed
        return worker > 0 and allowed is not None and not allowed()

    def _loop(self, worker: int = 0) -> None:
        if self.nice > 0:
            self._lower_priority(this_thread=True)
        while not self._stop.is_set():
            with self._cond:
                while (
                    (not self._waiting or self._held_back(worker))
                    and not self._stop.is_set()
                    and self.error is None
                ):
                    self._cond.wait(0.1)
                deadline = time.monotonic() + self.max_delay
                while len(self._waiting) < self.batch_size and not self._stop.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._stop.is_set() or self.error is not None:
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
                    self._lower_priority(this_thread=False)
            except BaseException as exc:  # handed to the streams through their requests
                with self._cond:
                    self.error = self.error or exc
                    waiting, self._waiting = self._waiting, []
                    self._cond.notify_all()  # the other workers stop too
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
        """Stop the threads (idempotent); requests still waiting are dropped unanswered."""
        self._stop.set()
        with self._cond:
            waiting, self._waiting = self._waiting, []
            self._cond.notify_all()
        for request in waiting:
            request.scheduler.cancel(request.track_id)
            request.dropped = True
            request.done.set()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() and t is not threading.current_thread() for t in self._threads):
            logger.warning("the stream's classifier did not stop within %.0f s", JOIN_TIMEOUT_S)
