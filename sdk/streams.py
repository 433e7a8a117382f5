"""Frame sources: cameras, video files, RTSP/HTTP URLs and iterables of frames.

Frames are captured in their own thread into a bounded queue. Live sources (cameras and
URLs) drop the oldest frame when the consumer falls behind; files and iterables deliver
every frame. A live source that stops delivering is reopened with exponential backoff.
The source is opened when the :class:`FrameStream` is created, so a missing file, a corrupt
video or an absent camera raises :class:`SourceError` right away.
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

from .errors import ConfigError, SourceError

__all__ = ["Capture", "FrameStream", "StreamFrame", "is_live_source", "open_capture"]

logger = logging.getLogger(__name__)

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

    def read(self) -> tuple[bool, Any]:
        try:
            return True, next(self._it)
        except StopIteration:
            return False, None

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


def open_capture(source: Any) -> Capture:
    """Open a camera index, URL, video file or iterable of frames; raise :class:`SourceError` if it fails."""
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
    cap = cv2.VideoCapture(str(target) if isinstance(target, os.PathLike) else target)
    if not cap.isOpened():
        cap.release()
        kind = "camera" if isinstance(target, int) else "source"
        raise SourceError(
            f"cannot open {kind} {source!r}: no such device, unreachable URL, or a file OpenCV cannot decode"
        )
    return cap


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
        reconnect: Reopen a live source that stops delivering.
        max_retries: Consecutive failed reopen attempts before giving up (SourceError).
        backoff: Initial and maximum wait between reopen attempts, in seconds.
        opener: ``opener(source) -> Capture``; defaults to :func:`open_capture` (tests inject fakes).
    """

    def __init__(
        self,
        source: Any,
        live: bool | None = None,
        queue_size: int = 4,
        reconnect: bool = True,
        max_retries: int = 10,
        backoff: tuple[float, float] = (0.5, 8.0),
        opener: Callable[[Any], Capture] = open_capture,
    ) -> None:
        if queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {queue_size}")
        self.source = source
        self.live = is_live_source(source) if live is None else live
        self.reconnect, self.max_retries, self.backoff = reconnect, max_retries, backoff
        self._opener = opener
        self._cap: Capture | None = opener(source)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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

    def _run(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                ok, frame = self._cap.read() if self._cap is not None else (False, None)
                decode_ms = (time.perf_counter() - start) * 1000.0
                if ok and frame is not None:
                    self._put(StreamFrame(index, time.time(), frame, decode_ms))
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
                logger.warning("source %r stopped delivering frames; reconnecting", self.source)
                if not (self.reconnect and self._reopen()):
                    if not self._stop.is_set():
                        raise SourceError(f"source {self.source!r} was lost and could not be reopened")
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
