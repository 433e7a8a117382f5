"""Streams used the way a careless or hostile caller would: nothing hangs, nothing is silently lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesdk import Analyzer
from facesdk.errors import ConfigError, SourceError
from facesdk.scheduling import ScheduleConfig
from facesdk.streams import FrameStream
from facesdk.streams.classifier import HISTORY
from facesdk.testing import CountingBackend, ScriptedDetector, index_frame
from tests.helpers import guarded

BOX = [(40.0, 40.0, 80.0, 80.0)]


def _analyzer(export: Path) -> Analyzer:
    a = Analyzer(export, backend="onnxruntime", detector=ScriptedDetector(lambda i: BOX))
    a.backend = CountingBackend(a.manifest.tasks, a.manifest.max_batch)
    return a


def _frames(count: int, bad_at: int | None = None, bad: Any = None) -> Iterator[Any]:
    for i in range(count):
        yield bad if i == bad_at else index_frame(i)


def endless() -> Iterator[np.ndarray]:
    """A camera that never ends."""
    i = 0
    while True:
        yield index_frame(i % 60000)
        i += 1


def _facesdk_threads() -> list[str]:
    names = ("facesdk-stream-", "facesdk-capture", "facesdk-classifier")
    return [t.name for t in threading.enumerate() if t.name.startswith(names)]


def test_a_multistream_iterated_twice_raises_instead_of_blocking(tiny_export: Path) -> None:
    with _analyzer(tiny_export) as a:
        multi = a.streams([list(_frames(5)), list(_frames(5))])
        assert len(guarded(lambda: list(multi))) == 10
        with pytest.raises(ConfigError, match="iterated already"):
            guarded(lambda: list(multi))
    assert not _facesdk_threads()


def test_one_iterator_as_two_sources_is_refused(tiny_export: Path) -> None:
    gen = _frames(10)
    with _analyzer(tiny_export) as a:
        with pytest.raises(ConfigError, match="same object"):
            a.streams([gen, gen])
        stream = FrameStream(list(_frames(3)))
        with pytest.raises(ConfigError, match="same object"):
            a.streams({"a": stream, "b": stream})
        stream.close()
        frames = list(_frames(3))  # a list can be read twice: allowed
        assert len(guarded(lambda: list(a.streams([frames, frames])))) == 6


def test_a_live_iterator_that_ends_ends_its_source(tiny_export: Path) -> None:
    with _analyzer(tiny_export) as a:
        results = guarded(lambda: list(a.stream(_frames(7), live=True, queue_size=8, backoff=(0.01, 0.02))))
        assert [r.index for r in results] == list(range(7))
        multi = a.streams({"live": _frames(4)}, live=True, queue_size=8)
        assert len(guarded(lambda: list(multi))) == 4 and not multi.errors


@pytest.mark.parametrize("bad", [None, "not a frame", np.zeros((0, 0, 3), np.uint8)])
def test_a_bad_frame_is_its_sources_error_not_a_silent_end(tiny_export: Path, bad: Any) -> None:
    with _analyzer(tiny_export) as a:
        with pytest.raises((SourceError, ValueError)) as caught:
            guarded(lambda: list(a.stream(_frames(6, bad_at=3, bad=bad))))
        assert "frame" in str(caught.value)
        multi = a.streams({"bad": _frames(6, bad_at=3, bad=bad), "good": list(_frames(6))})
        results = guarded(lambda: list(multi))
    assert sorted(r.index for r in results if r.source == "good") == list(range(6))
    assert [r.index for r in results if r.source == "bad"] == [0, 1, 2]
    assert "bad" in multi.errors


def test_the_batch_history_is_bounded(tiny_export: Path) -> None:
    with _analyzer(tiny_export) as a:
        multi = a.streams([_frames(HISTORY + 40)], schedule=ScheduleConfig(enabled=False), batch_size=1)
        guarded(lambda: sum(1 for _ in multi))
        assert a.backend.crops == HISTORY + 40  # every frame's face was run ...
        assert len(multi.batches) == HISTORY  # ... but only the latest calls are remembered


def test_closing_a_multistream_stops_every_thread(tiny_export: Path) -> None:
    with _analyzer(tiny_export) as a:
        multi = a.streams({"a": endless(), "b": endless()})
        it = iter(multi)
        for _ in range(10):
            next(it)
        multi.close()
    assert not _facesdk_threads()


def test_streams_take_the_same_options_as_stream(tiny_export: Path) -> None:
    times = iter(range(1000))
    with _analyzer(tiny_export) as a:
        results = guarded(
            lambda: list(a.streams([list(_frames(4))], clock=lambda: float(next(times)), overlap=False))
        )
    assert [r.timestamp for r in results] == [0.0, 1.0, 2.0, 3.0]


def test_the_classifier_batches_up_to_what_the_backend_runs_best(tiny_export: Path) -> None:
    with _analyzer(tiny_export) as a:
        assert a.engine.batch_size == min(8, a.manifest.max_batch)
        a.backend.batch_buckets = (1, 2, 4)  # like OpenVINO's compiled static batches
        assert a.engine.batch_size == 4
        a.backend.preferred_batch = 2
        assert a.engine.batch_size == 2


def test_closing_from_another_thread_ends_the_iteration(tiny_export: Path) -> None:
    with _analyzer(tiny_export) as a:
        multi = a.streams({"a": endless()})
        threading.Timer(0.5, multi.close).start()
        assert guarded(lambda: sum(1 for _ in multi), seconds=30) > 0
    assert not _facesdk_threads()


def test_a_stream_takes_a_batch_size_like_streams(tiny_export: Path) -> None:
    boxes = [(40.0 + 100.0 * k, 40.0, 80.0, 80.0) for k in range(5)]
    with Analyzer(tiny_export, backend="onnxruntime", detector=ScriptedDetector(lambda i: boxes)) as a:
        a.backend = CountingBackend(a.manifest.tasks, a.manifest.max_batch)
        every = ScheduleConfig(enabled=False)
        guarded(lambda: list(a.stream(list(_frames(6)), schedule=every, batch_size=2)))
        assert max(a.backend.calls) <= 2 and a.backend.crops == 30
        with pytest.raises(ConfigError, match="batch_size"):
            next(iter(a.stream(list(_frames(2)), batch_size=0)))


def test_a_refused_option_releases_the_sources_it_opened(tiny_export: Path) -> None:
    streams = [FrameStream(list(_frames(3))), FrameStream(list(_frames(3)))]
    with _analyzer(tiny_export) as a:
        with pytest.raises(ConfigError, match="overlap=False"):
            a.streams(streams, overlap=False)  # one source only
        with pytest.raises(ConfigError, match="batch_size"):
            a.streams([list(_frames(3))], batch_size=-1)
    assert all(s.closed for s in streams)  # released, not left open


def test_an_overdue_refresh_goes_before_newer_tracks(tiny_export: Path) -> None:
    from facesdk.streams.classifier import OVERDUE_S, Classifier, Request
    from facesdk.streams.scheduling import StreamScheduler

    with _analyzer(tiny_export) as a:
        classifier = Classifier(a.engine, batch_size=2, threaded=False)
        scheduler = StreamScheduler(None)
        det = ScriptedDetector(lambda i: BOX).detect(index_frame(0))[0]
        crop = np.zeros((32, 32, 3), np.uint8)
        now = time.perf_counter()
        refresh = Request(
            scheduler, 0, None, det, crop, 0.0, (1.0, -0.9), seq=0, submitted=now - 2 * OVERDUE_S
        )
        new = [
            Request(scheduler, i, None, det, crop, 0.0, (0.0, float(i)), seq=i, submitted=now)
            for i in (1, 2, 3)
        ]
        classifier._waiting = [refresh, *new]  # noqa: SLF001 - the queue as the thread would see it
        first = classifier._take()  # noqa: SLF001
        assert refresh in first and new[0] in first  # overdue first, then the new tracks in order
        assert classifier._take() == new[1:]  # noqa: SLF001
