"""Each face of each frame carries its own track's estimate, in order: waiting and asynchronous, one source and many.

Every face is painted with a gray level unique to (source, frame, face); the encoding backend
answers each crop with logits that encode the level it saw, so a result says exactly which crop
its estimate came from. Smoothing is off so the level reads back exactly.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from facesdk import Analyzer, FrameResult
from facesdk.errors import ConfigError
from facesdk.scheduling import ScheduleConfig
from facesdk.testing import EncodingBackend, ScriptedDetector, decode_face, painted_frame
from facesdk.tracking import TrackerConfig
from tests.helpers import guarded

FPS = 25.0
BOXES = [(40.0, 40.0, 80.0, 80.0), (200.0, 60.0, 80.0, 80.0), (400.0, 30.0, 90.0, 90.0)]


PER_SOURCE = 84
"""Gray levels each source owns: 28 frames of three faces."""


def level(source: int, frame: int, face: int) -> int:
    """The gray level painted into ``face`` of ``frame`` of ``source``: unique within a test."""
    value = 1 + source * PER_SOURCE + frame * 3 + face
    assert value < 256 and frame * 3 + face < (PER_SOURCE if source < 2 else 255 - 2 * PER_SOURCE)
    return value


def who(value: int, source: int) -> tuple[int, int]:
    """The (frame, face) that was painted with ``value`` in ``source``; fails for another source's level."""
    offset = value - 1 - source * PER_SOURCE
    assert 0 <= offset < PER_SOURCE, f"level {value} belongs to another source than {source}"
    return divmod(offset, 3)


def frames(source: int, count: int) -> Iterator[Any]:
    for i in range(count):
        yield painted_frame(i, BOXES, [level(source, i, k) for k in range(len(BOXES))])


def clock() -> Callable[[], float]:
    return (i / FPS for i in itertools.count()).__next__


def analyzer(export: Path, gate: threading.Event | None = None, **kwargs: Any) -> Analyzer:
    a = Analyzer(
        export,
        backend="onnxruntime",
        detector=ScriptedDetector(lambda i: BOXES),
        tracker=TrackerConfig(smoothing=0.0),
        **kwargs,
    )
    a.backend = EncodingBackend(a.manifest.tasks, a.manifest.preprocess, a.manifest.max_batch, gate=gate)
    return a


def check_own_estimates(results: list[FrameResult], source: int = 0) -> int:
    """Every estimated face carries a crop of its own track from its own or an earlier frame,
    ``estimate_age_s`` says which, and ``inferred`` faces come from this very frame. Returns the
    number of estimated faces."""
    assert [r.index for r in results] == list(range(len(results))), "results out of frame order"
    estimated = 0
    for r in results:
        assert [f.track_id for f in r.faces] == [1, 2, 3]
        for k, face in enumerate(r.faces):
            value = decode_face(face)
            if value is None:
                assert not face.inferred
                continue
            estimated += 1
            frame, slot = who(value, source)
            assert slot == k, f"frame {r.index}: track {face.track_id} carries face {slot}'s estimate"
            assert frame <= r.index, f"frame {r.index} carries an estimate from later frame {frame}"
            assert face.estimate_age_s == pytest.approx((r.index - frame) / FPS), (
                "age disagrees with the crop"
            )
            assert face.inferred == (frame == r.index)
    return estimated


@pytest.mark.parametrize("overlap", [True, False])
def test_every_face_of_every_frame_gets_its_own_crop(tiny_export: Path, overlap: bool) -> None:
    with analyzer(tiny_export) as a:
        schedule = ScheduleConfig(enabled=False)
        results = guarded(
            lambda: list(a.stream(frames(0, 28), schedule=schedule, overlap=overlap, clock=clock()))
        )
    assert check_own_estimates(results) == 28 * 3
    assert all(f.inferred for r in results for f in r.faces)


@pytest.mark.parametrize("overlap", [True, False])
def test_waiting_stream_carries_each_tracks_latest_estimate(tiny_export: Path, overlap: bool) -> None:
    with analyzer(tiny_export) as a:
        schedule = ScheduleConfig(refresh_s=0.2, max_crops_per_frame=1)
        results = guarded(
            lambda: list(a.stream(frames(0, 28), schedule=schedule, overlap=overlap, clock=clock()))
        )
    assert check_own_estimates(results) == 28 * 3 - 3  # faces 2 and 3 wait 1 and 2 frames for their turn
    inferred = [[f.track_id for f in r.faces if f.inferred] for r in results]
    assert inferred[:3] == [[3], [1], [2]]  # new tracks: oldest seen, then the largest face
    assert sum(map(len, inferred)) > 3  # refreshed, each with its own newer crop


def test_asynchronous_stream_never_waits_and_joins_estimates_to_their_tracks(tiny_export: Path) -> None:
    gate = threading.Event()
    with analyzer(tiny_export, gate=gate) as a:
        schedule = ScheduleConfig(refresh_s=0.2, max_crops_per_frame=3)

        def run() -> list[FrameResult]:
            out = []
            for result in a.stream(frames(0, 28), schedule=schedule, clock=clock(), wait=False):
                out.append(result)
                if len(out) == 12:  # the backbone has been held for twelve frames: open it
                    gate.set()
            return out

        results = guarded(run)
    held = results[:12]
    assert all(not f.estimated and not f.inferred for r in held for f in r.faces), (
        "a frame waited for the backbone"
    )
    assert check_own_estimates(results) > 0
    assert all(f.estimated for f in results[-1].faces), "estimates never joined their tracks"


def test_a_live_source_is_asynchronous_by_default_and_a_file_waits(tiny_export: Path) -> None:
    gate = threading.Event()
    with analyzer(tiny_export, gate=gate) as a:

        def first(**kwargs: Any) -> FrameResult:
            stream = a.stream(frames(0, 28), clock=clock(), **kwargs)
            try:
                return next(iter(stream))
            finally:
                gate.set()
                stream.close()

        live = guarded(lambda: first(live=True))
        assert not any(f.estimated for f in live.faces)  # did not wait for the held backbone
        gate.clear()
        threading.Timer(0.5, gate.set).start()
        waited = guarded(lambda: first())
        assert any(f.inferred and f.estimated for f in waited.faces)  # waited until the gate opened


def test_wait_false_without_a_schedule_is_refused(tiny_export: Path) -> None:
    with analyzer(tiny_export) as a:
        with pytest.raises(ConfigError, match="wait=False"):
            next(iter(a.stream(frames(0, 3), schedule=ScheduleConfig(enabled=False), wait=False)))
        with pytest.raises(ConfigError, match="wait=False"):
            next(iter(a.stream(frames(0, 3), overlap=False, wait=False)))


@pytest.mark.parametrize("wait", [True, False])
def test_many_sources_each_face_gets_its_own_sources_crop(tiny_export: Path, wait: bool) -> None:
    with analyzer(tiny_export) as a:
        schedule = ScheduleConfig(refresh_s=0.2, max_crops_per_frame=2)
        sources = {f"cam{s}": frames(s, 25) for s in range(3)}
        results = guarded(lambda: list(a.streams(sources, schedule=schedule, wait=wait)))
    for s in range(3):
        mine = [r for r in results if r.source == f"cam{s}"]
        assert len(mine) == 25
        # stream time is each frame's capture time here: check tracks and order, not ages
        for r in mine:
            for k, face in enumerate(r.faces):
                value = decode_face(face)
                if value is not None:
                    frame, slot = who(value, s)
                    assert slot == k and frame <= r.index, (
                        f"cam{s} frame {r.index} face {k}: crop {frame}/{slot}"
                    )
        assert [r.index for r in mine] == list(range(25))
        assert all(f.estimated for f in mine[-1].faces)
