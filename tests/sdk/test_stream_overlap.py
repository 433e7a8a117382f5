"""Detect of frame t+1 overlapping the backbone on frame t: order, errors, early stop, no leaked threads."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesdk import Analyzer
from facesdk.errors import BackendError, SourceError
from facesdk.scheduling import ScheduleConfig
from facesdk.streams import FrameStream
from facesdk.testing import CountingBackend, ScriptedDetector, index_frame
from tests.helpers import guarded as _guarded

"""A stream that has not ended by then is hung (the guard fails the test instead of hanging it)."""


STREAM_THREADS = ("facesdk-stream-", "facesdk-capture", "facesdk-classifier")


def _stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(STREAM_THREADS)]


def _analyzer(export: Path, faces: int = 2, **backend: Any) -> Analyzer:
    boxes = [(10.0 + 100.0 * k, 40.0, 60.0, 60.0) for k in range(faces)]
    analyzer = Analyzer(export, backend="onnxruntime", detector=ScriptedDetector(lambda i: boxes))
    analyzer.backend = CountingBackend(analyzer.manifest.tasks, analyzer.manifest.max_batch, **backend)
    return analyzer


def _frames(count: int | None, fail_at: int | None = None) -> Iterator[np.ndarray]:
    for i in itertools.count() if count is None else range(count):
        if i == fail_at:
            raise SourceError("camera unplugged")
        yield index_frame(i % 60000)


@pytest.mark.parametrize("overlap", [True, False])
def test_results_come_in_frame_order_and_match_the_sequential_run(tiny_export: Path, overlap: bool) -> None:
    with _analyzer(tiny_export) as analyzer:
        schedule = ScheduleConfig(enabled=False)
        results = _guarded(lambda: list(analyzer.stream(_frames(30), overlap=overlap, schedule=schedule)))
    assert [r.index for r in results] == list(range(30))
    assert analyzer.detector.frames == list(range(30))
    assert all(len(r.faces) == 2 and all(f.inferred for f in r.faces) for r in results)
    assert not _stream_threads()


def test_detection_runs_at_most_two_frames_ahead_of_the_backbone(tiny_export: Path) -> None:
    ahead: list[int] = []

    def consume() -> None:
        with _analyzer(tiny_export, delay_s=0.01) as analyzer:
            schedule = ScheduleConfig(enabled=False)
            for result in analyzer.stream(_frames(20), schedule=schedule, queue_size=1):
                ahead.append(len(analyzer.detector.frames) - 1 - result.index)

    _guarded(consume)
    # one frame waiting in the bounded queue, one in the worker's hands
    assert len(ahead) == 20 and max(ahead) <= 2 and max(ahead) >= 1, ahead


@pytest.mark.parametrize("overlap", [True, False])
def test_a_failing_backend_ends_the_stream_with_its_error(tiny_export: Path, overlap: bool) -> None:
    seen: list[int] = []

    def consume() -> None:
        with _analyzer(tiny_export, fail_on_call=4) as analyzer:
            schedule = ScheduleConfig(enabled=False)
            for result in analyzer.stream(_frames(None), overlap=overlap, schedule=schedule):
                seen.append(result.index)

    with pytest.raises(BackendError, match="failing on call 4"):
        _guarded(consume)
    # three answered calls cover frames 0, 1, 2 (with overlap a call may hold the crops of up to
    # three frames: the one the caller waits for, one queued, one in the worker's hands); the
    # frame whose crops failed is never yielded
    assert seen == list(range(len(seen))) and (seen == [0, 1, 2] if not overlap else 3 <= len(seen) <= 9)
    assert not _stream_threads()


@pytest.mark.parametrize("overlap", [True, False])
def test_a_failing_source_ends_the_stream_with_its_error(tiny_export: Path, overlap: bool) -> None:
    seen: list[int] = []

    def consume() -> None:
        with _analyzer(tiny_export) as analyzer:
            for result in analyzer.stream(_frames(None, fail_at=5), overlap=overlap):
                seen.append(result.index)

    with pytest.raises(SourceError, match="unplugged"):
        _guarded(consume)
    assert seen == [0, 1, 2, 3, 4]
    assert not _stream_threads()


def test_a_failing_detector_ends_the_stream_with_its_error(tiny_export: Path) -> None:
    def explode(index: int) -> list:
        if index == 3:
            raise RuntimeError("detector broke")
        return []

    def consume() -> list:
        with Analyzer(tiny_export, backend="onnxruntime", detector=ScriptedDetector(explode)) as analyzer:
            return [r.index for r in analyzer.stream(_frames(None))]

    with pytest.raises(RuntimeError, match="detector broke"):
        _guarded(consume)
    assert not _stream_threads()


def test_stopping_early_stops_every_thread(tiny_export: Path) -> None:
    def consume() -> list[int]:
        with _analyzer(tiny_export) as analyzer:
            stream = analyzer.stream(_frames(None))
            indices = [r.index for r, _ in zip(stream, range(5), strict=False)]
            stream.close()
            return indices

    assert _guarded(consume) == [0, 1, 2, 3, 4]
    assert not _stream_threads()


def test_a_live_source_still_drops_its_oldest_frames_behind_a_slow_backbone(tiny_export: Path) -> None:
    class Camera:
        def __init__(self) -> None:
            self.count = itertools.count()

        def read(self) -> tuple[bool, np.ndarray]:
            return True, index_frame(next(self.count) % 60000)

        def release(self) -> None:
            pass

    frames = FrameStream("cam", live=True, queue_size=2, opener=lambda source: Camera())

    def consume() -> list[int]:
        with _analyzer(tiny_export, delay_s=0.05) as analyzer:
            stream = analyzer.stream(frames, schedule=ScheduleConfig(enabled=False))
            indices = [r.index for r, _ in zip(stream, range(6), strict=False)]
            stream.close()
            return indices

    indices = _guarded(consume)
    assert indices == sorted(indices) and len(set(indices)) == 6
    assert frames.dropped > 0 and indices[-1] > 5, (
        f"a live camera behind the backbone dropped nothing: {indices}"
    )
    assert not _stream_threads()
