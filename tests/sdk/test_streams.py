from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesdk.errors import SourceError
from facesdk.streams import FrameStream, is_live_source


def _frame(i: int) -> np.ndarray:
    return np.full((8, 8, 3), i % 256, np.uint8)


class FakeCamera:
    """Delivers ``frames`` frames (``None`` = forever), then fails like an unplugged camera."""

    def __init__(self, frames: int | None, start: int = 0, delay: float = 0.0) -> None:
        self.left, self.next, self.delay = frames, start, delay
        self.released = False

    def read(self) -> tuple[bool, Any]:
        if self.delay:
            time.sleep(self.delay)
        if self.left is not None:
            if self.left <= 0:
                return False, None
            self.left -= 1
        self.next += 1
        return True, _frame(self.next - 1)

    def release(self) -> None:
        self.released = True


def test_live_source_detection() -> None:
    assert is_live_source(0) and is_live_source("2") and is_live_source("rtsp://cam/1")
    assert not is_live_source("video.mp4") and not is_live_source([_frame(0)])


def test_iterable_delivers_every_frame_in_order() -> None:
    frames = [f.image[0, 0, 0] for f in FrameStream((_frame(i) for i in range(20)), queue_size=2)]
    assert frames == list(range(20))


def test_video_file_delivers_every_frame(astronaut_video: Path) -> None:
    items = list(FrameStream(str(astronaut_video)))
    assert [i.index for i in items] == list(range(5))
    assert items[0].image.shape == (512, 512, 3) and items[0].decode_ms >= 0


def test_missing_and_corrupt_videos_raise_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        FrameStream(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"RIFF\x00\x00garbage" * 50)
    with pytest.raises(SourceError):
        list(FrameStream(corrupt))


def test_absent_camera_raises_source_error() -> None:
    with pytest.raises(SourceError, match="cannot open camera"):
        FrameStream(97)


def test_bad_source_type() -> None:
    with pytest.raises(SourceError, match="iterable of frames"):
        FrameStream(3.5)


def test_camera_reconnects_after_disconnect() -> None:
    cameras = [FakeCamera(3, start=0), None, FakeCamera(3, start=100)]
    opened: list[FakeCamera] = []

    def opener(source: Any) -> FakeCamera:
        cam = cameras.pop(0) if cameras else None
        if cam is None:
            raise SourceError("camera busy")
        opened.append(cam)
        return cam

    stream = FrameStream(0, opener=opener, backoff=(0.01, 0.02), queue_size=64)
    values = []
    for item in stream:
        values.append(int(item.image[0, 0, 0]))
        if len(values) == 6:
            break
    assert values == [0, 1, 2, 100, 101, 102]
    assert stream.reconnects == 1 and opened[0].released


def test_reconnect_gives_up_after_max_retries() -> None:
    first = [FakeCamera(2)]

    def opener(source: Any) -> FakeCamera:
        if first:
            return first.pop()
        raise SourceError("gone")

    stream = FrameStream("rtsp://cam", opener=opener, backoff=(0.01, 0.01), max_retries=2)
    with pytest.raises(SourceError, match="could not be reopened"):
        list(stream)


def test_shutdown_on_break_and_on_interrupt() -> None:
    cam = FakeCamera(None)
    stream = FrameStream(0, opener=lambda s: cam)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    assert stream._thread is not None and not stream._thread.is_alive()
    assert cam.released
    cam2 = FakeCamera(None)
    with pytest.raises(KeyboardInterrupt), FrameStream(0, opener=lambda s: cam2) as stream2:
        for _ in stream2:
            raise KeyboardInterrupt
    assert not stream2._thread.is_alive() and cam2.released


def test_close_from_another_thread_ends_iteration() -> None:
    stream = FrameStream(0, opener=lambda s: FakeCamera(None, delay=0.001))
    timer = threading.Timer(0.2, stream.close)
    timer.start()
    count = sum(1 for _ in stream)
    timer.join()
    assert count > 0 and not stream._thread.is_alive()


def test_live_source_drops_oldest_when_consumer_is_slow() -> None:
    stream = FrameStream(0, opener=lambda s: FakeCamera(None), queue_size=2)
    seen = []
    for item in stream:
        seen.append(item.index)
        time.sleep(0.02)
        if len(seen) == 5:
            break
    assert stream.dropped > 0 and seen[-1] - seen[0] > 4
