"""Frame sources: cameras, video files, RTSP/HTTP URLs and iterables of frames.

Frames are captured in their own thread into a bounded queue. Live sources (cameras and
URLs) drop the oldest frame when the consumer falls behind; files and iterables deliver
every frame. A live source that can be opened again (a camera index, URL or path) and stops
delivering is reopened with exponential backoff, at most ``max_retries`` times in a row before
it is reported lost (:class:`SourceError`); an iterable that ends ends its source, live or not.
The source is opened when the :class:`FrameStream` is created, so a missing file, a corrupt
video or an absent camera raises :class:`SourceError` right away.

Network sources are opened with OpenCV's open and read timeouts
(``CAP_PROP_OPEN_TIMEOUT_MSEC``/``CAP_PROP_READ_TIMEOUT_MSEC``; :data:`DEFAULT_OPEN_TIMEOUT_S`,
:data:`DEFAULT_READ_TIMEOUT_S`), so a stalled camera cannot block a read for long. An iterable
that yields ``None`` or something that is not a frame fails its source with an error that says
which frame.

Each frame is stamped with its capture time (``time.time()``), except a video file read as a
file (not ``live``): there with the time the stream started plus the frame's time in the video
(:func:`media_time`), so a stream's schedule and its estimate ages follow the video, not how fast
this machine happens to decode and analyse it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ..errors import ConfigError, SourceError

__all__ = [
    "DEFAULT_OPEN_TIMEOUT_S",
    "DEFAULT_READ_TIMEOUT_S",
    "Capture",
    "FrameStream",
    "StreamFrame",
    "is_live_source",
    "is_reopenable",
    "media_time",
    "open_capture",
]

logger = logging.getLogger(__name__)

DEFAULT_OPEN_TIMEOUT_S = 10.0
"""Most seconds opening a network source may take before it counts as a failed try."""
DEFAULT_READ_TIMEOUT_S = 5.0
"""Most seconds one read of a network source may block before the source counts as stopped."""
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
_END = object()


class Capture(Protocol):
    """What a capture object offers (``cv2.VideoCapture`` fits)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StreamFrame:
    """One captured frame: its index in the stream, capture time, pixels and read time (ms)."""

    index: int
    timestamp: float
    image: np.ndarray
    decode_ms: float


class _IterCapture:
    """Wraps an iterable of frames in the :class:`Capture` interface."""

    def __init__(self, frames: Iterable[Any]) -> None:
        self._it = iter(frames)
        self._count = 0

    def read(self) -> tuple[bool, Any]:
        try:
            frame = next(self._it)
        except StopIteration:
            return False, None
        if not isinstance(frame, np.ndarray):
            raise SourceError(
                f"the source's item {self._count} is {'None' if frame is None else type(frame).__name__}, "
                "not a frame (a numpy image); an iterable source ends by stopping, not by yielding None"
            )
        self._count += 1
        return True, frame

    def release(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


def is_live_source(source: Any) -> bool:
    """Cameras (ints or digit strings) and network URLs are live; files and iterables are not."""
    if isinstance(source, int):
        return True
    if isinstance(source, str):
        return source.isdigit() or source.lower().startswith(URL_SCHEMES)
    return False


def is_reopenable(source: Any) -> bool:
    """Whether a lost source can be opened again: a camera index, URL or path (not an iterable)."""
    return isinstance(source, (str, int, os.PathLike))


def _open_url(url: str, open_timeout_s: float, read_timeout_s: float) -> Any:
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(read_timeout_s * 1000),
    ]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


def open_capture(
    source: Any,
    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
) -> Capture:
    """Open a camera index, URL, video file or iterable of frames; raise :class:`SourceError` if it fails.

    URLs are opened with OpenCV's open and read timeouts (seconds).
    """
    if not isinstance(source, (str, int, os.PathLike)):
        if isinstance(source, np.ndarray) or not isinstance(source, Iterable):
            raise SourceError(
                f"a source must be a camera index, video path, URL or iterable of frames; got {type(source).__name__}"
            )
        return _IterCapture(source)
    if isinstance(source, (str, os.PathLike)) and not is_live_source(str(source)):
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"video file {path} does not exist")
    target: Any = int(source) if isinstance(source, str) and source.isdigit() else source
    if isinstance(target, str) and target.lower().startswith(URL_SCHEMES):
        cap = _open_url(target, open_timeout_s, read_timeout_s)
    else:
        cap = cv2.VideoCapture(str(target) if isinstance(target, os.PathLike) else target)
    if not cap.isOpened():
        cap.release()
        kind = "camera" if isinstance(target, int) else "source"
        raise SourceError(
            f"cannot open {kind} {source!r}: no such device, unreachable URL, or a file OpenCV cannot decode"
        )
    return cap


def media_time(cap: Any, index: int, previous: float | None) -> float | None:
    """Seconds from a video's start to its frame just read (``None`` when the file cannot say).

    The container's timestamp (``CAP_PROP_POS_MSEC``, right for variable frame rates) while it
    moves forward, else ``index / CAP_PROP_FPS``; always later than ``previous``.
    """
    get = getattr(cap, "get", None)
    if get is None:
        return None
    try:
        ms, fps = float(get(cv2.CAP_PROP_POS_MSEC)), float(get(cv2.CAP_PROP_FPS))
    except (TypeError, ValueError, cv2.error):
        return None
    step = 1.0 / fps if 0 < fps < 1000 else None
    if ms >= 0 and ms < float("inf") and (previous is None or ms / 1000.0 > previous):
        return ms / 1000.0
    if step is None:
        return None
    seconds = index * step
    return seconds if previous is None or seconds > previous else previous + step


def _declared_frames(cap: Any) -> int:
    """The frame count a video container states (0 when the capture cannot say)."""
    get = getattr(cap, "get", None)
    try:
        return max(0, int(get(cv2.CAP_PROP_FRAME_COUNT))) if get is not None else 0
    except (TypeError, ValueError, cv2.error):
        return 0


class FrameStream:
    """Iterate over a source's frames, captured in a background thread.

    Args:
        source: Camera index, video path, URL, or an iterable of frames.
        live: Drop oldest frames when behind (default: true for cameras and URLs).
        queue_size: Frames buffered between the capture thread and the consumer.
        reconnect: Reopen a live camera, URL or path that stops delivering (an iterable is never
            reopened: its end is the source's end).
        max_retries: Consecutive failed reopen attempts before the source is reported lost (SourceError).
        backoff: Initial and maximum wait between reopen attempts, in seconds.
        opener: ``opener(source) -> Capture``; defaults to :func:`open_capture` with the timeouts
            below (tests inject fakes).
        open_timeout_s: Most seconds opening a network source may take.
        read_timeout_s: Most seconds one read of a network source may block.
    """

    def __init__(
        self,
        source: Any,
        live: bool | None = None,
        queue_size: int = 4,
        reconnect: bool = True,
        max_retries: int = 10,
        backoff: tuple[float, float] = (0.5, 8.0),
        opener: Callable[[Any], Capture] | None = None,
        open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    ) -> None:
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ConfigError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        for name, value in (("open_timeout_s", open_timeout_s), ("read_timeout_s", read_timeout_s)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        if opener is None:

            def opener(source: Any) -> Capture:
                return open_capture(source, open_timeout_s, read_timeout_s)

        self.source = source
        self.live = is_live_source(source) if live is None else live
        self.reconnect, self.max_retries, self.backoff = reconnect, max_retries, backoff
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self._opener = opener
        self._cap: Capture | None = opener(source)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._epoch = 0.0
        self.dropped = 0
        self.reconnects = 0
        self.declared_frames = _declared_frames(self._cap) if not self.live else 0
        """Frames the video container states (0 when unknown or live)."""
        self.frames_read = 0
        """Frames delivered so far; below ``declared_frames`` at the end when the file is truncated."""

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            if self.live and item is not _END and not isinstance(item, BaseException):
                try:
                    self._queue.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
                    continue
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _reopen(self) -> bool:
        delay, limit = self.backoff
        for attempt in range(1, self.max_retries + 1):
            if self._stop.wait(delay):
                return False
            try:
                self._cap = self._opener(self.source)
                self.reconnects += 1
                logger.info("reopened %r after %d attempt(s)", self.source, attempt)
                return True
            except SourceError as exc:
                logger.warning("reopening %r failed (attempt %d): %s", self.source, attempt, exc)
                delay = min(delay * 2, limit)
        return False

    def _timestamp(self, index: int, previous: float | None) -> float:
        """A frame's stream time: when it was captured, or for a video file read as a file (not
        live) when the stream started plus the frame's time in the video."""
        if self.live or not isinstance(self.source, (str, os.PathLike)) or self._cap is None:
            return time.time()
        seconds = media_time(self._cap, index, None if previous is None else previous - self._epoch)
        return time.time() if seconds is None else self._epoch + seconds

    def _run(self) -> None:
        index = 0
        self._epoch = time.time()
        previous: float | None = None
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                ok, frame = self._cap.read() if self._cap is not None else (False, None)
                decode_ms = (time.perf_counter() - start) * 1000.0
                if ok and frame is not None:
                    previous = self._timestamp(index, previous)
                    self._put(StreamFrame(index, previous, frame, decode_ms))
                    index += 1
                    self.frames_read = index
                    continue
                if self._cap is not None:
                    self._cap.release()
                    self._cap = None
                if not self.live:
                    if index == 0 and isinstance(self.source, (str, os.PathLike)):
                        raise SourceError(
                            f"{self.source!r}: no frame could be decoded (corrupt or empty video)"
                        )
                    if 0 < index < self.declared_frames:
                        logger.warning(
                            "video %s ended after %d of the %d frames its container states: the file is "
                            "truncated or damaged, and results cover only the frames read",
                            self.source,
                            index,
                            self.declared_frames,
                        )
                    break
                if not is_reopenable(self.source):
                    break  # an iterable's end is its source's end
                logger.warning("source %r stopped delivering frames; reconnecting", self.source)
                if not (self.reconnect and self._reopen()):
                    if not self._stop.is_set():
                        raise SourceError(
                            f"source {self.source!r} was lost and could not be reopened "
                            f"({self.max_retries} tries with backoff up to {self.backoff[1]:g} s)"
                        )
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            self._put(_END)

    def __iter__(self) -> Iterator[StreamFrame]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="facesdk-capture", daemon=True)
            self._thread.start()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._thread is not None and not self._thread.is_alive() and self._queue.empty():
                        return
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the source is released or being released)."""
        return self._stop.is_set()

    def close(self) -> None:
        """Stop the capture thread and release the source (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            thread.join(timeout=5.0)
        if self._cap is not None and (thread is None or not thread.is_alive()):
            self._cap.release()
            self._cap = None

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
