"""An asynchronous stream's estimates are as fresh as the backbone allows, and the frame path goes first.

- A crop that waited in the classifier's queue is swapped, just before its call, for the same
  track's face in the stream's newest frame: the estimate is as old as the call, not the queue.
- The backbone's threads (the classifier's and ONNX Runtime's pool) run at a lower priority than
  the frame path (``ScheduleConfig.backbone_nice``).
- ONNX Runtime on the CPU sends one crop per call (a batch costs its crops' sum there).
- A video file's stream time is the video's own, so its schedule does not depend on the machine.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk import Analyzer, FrameResult
from facesdk.backends.onnxruntime import OnnxRuntimeBackend
from facesdk.backends.threads import lower_priority, native_threads_started
from facesdk.errors import ConfigError
from facesdk.faces.quality import assess_faces
from facesdk.scheduling import ScheduleConfig
from facesdk.streams.sources import FrameStream, media_time
from facesdk.testing import EncodingBackend, ScriptedDetector, decode_face, index_frame, painted_frame
from facesdk.tracking import TrackerConfig
from tests.helpers import guarded
from tests.sdk.test_stream_mixups import BOXES, analyzer, check_own_estimates, clock, frames, who


def gated_run(a: Analyzer, gate: threading.Event, count: int, open_after: int = 12) -> list[FrameResult]:
    """An asynchronous stream of ``count`` painted frames, one crop per call, new tracks all asked
    for at once and never refreshed by age; the backbone is held until ``open_after`` results."""
    schedule = ScheduleConfig(refresh_s=60.0, max_crops_per_frame=3)

    def run() -> list[FrameResult]:
        out = []
        stream = a.stream(frames(0, count), schedule=schedule, clock=clock(), wait=False, batch_size=1)
        for result in stream:
            out.append(result)
            if len(out) == open_after:
                gate.set()
        return out

    return guarded(run)


def test_a_queued_crop_is_refreshed_from_the_newest_frame(tiny_export: Path) -> None:
    gate = threading.Event()
    with analyzer(tiny_export, gate=gate) as a:
        # one crop per call: frame 0's first new track holds the backbone, the other two wait
        results = gated_run(a, gate, 28)
    check_own_estimates(results)
    last = results[-1].faces
    crops = [who(decode_face(face), 0) for face in last]
    assert [slot for _, slot in crops] == [0, 1, 2]
    held = [frame for frame, slot in crops if slot != 2]  # track 3 (the largest face) went first
    assert crops[2][0] < 11, "the crop held in the backbone call must be one from before the gate opened"
    assert all(frame >= 11 for frame in held), (
        f"queued crops were not refreshed: they come from frames {held}, asked for at frame 0"
    )


def test_a_waiting_stream_keeps_the_crops_it_asked_for(tiny_export: Path) -> None:
    with analyzer(tiny_export) as a:
        schedule = ScheduleConfig(refresh_s=60.0, max_crops_per_frame=3)
        results = guarded(
            lambda: list(a.stream(frames(0, 8), schedule=schedule, clock=clock(), batch_size=1))
        )
    assert [f.inferred for f in results[0].faces] == [True, True, True]
    assert [who(decode_face(f), 0) for f in results[0].faces] == [(0, 0), (0, 1), (0, 2)]


def test_lower_priority_raises_a_threads_niceness_only() -> None:
    seen: dict[str, object] = {}

    def body() -> None:
        start = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["changed"] = lower_priority(start + 3)
        seen["after"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["again"] = lower_priority(start + 1)  # never back up
        seen["start"] = start

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen["changed"] == [thread.native_id]
    assert seen["after"] == seen["start"] + 3 and seen["again"] == []
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == seen["start"], "touched the caller"
    assert lower_priority(5, [2**22 + 12345]) == []  # no such thread: nothing, no error


def test_native_threads_started_sees_a_runtimes_pool_not_python_threads(tiny_export: Path) -> None:
    a = Analyzer(tiny_export, backend="onnxruntime")
    try:
        release = threading.Event()
        python = threading.Thread(target=release.wait)
        with native_threads_started() as spawned:
            python.start()  # alive when the block ends (an ended thread's id may be reused)
            backend = OnnxRuntimeBackend(a.manifest, a.model_path, intra_op_threads=2)
        release.set()
        python.join()
        assert backend.worker_threads and backend.worker_threads <= spawned
        assert python.native_id not in spawned
        backend.close()
    finally:
        a.close()


def test_a_background_stream_lowers_the_backbones_threads(tiny_export: Path) -> None:
    with Analyzer(tiny_export, backend="onnxruntime", intra_op_threads=2) as a:
        (pool,) = a.backend.worker_threads
        before = os.getpriority(os.PRIO_PROCESS, pool)
        nice = min(19, before + 4)
        schedule = ScheduleConfig(backbone_nice=nice)
        images = [index_frame(i) for i in range(3)]
        guarded(lambda: list(a.stream(iter(images), schedule=schedule, wait=False, clock=clock())))
        assert os.getpriority(os.PRIO_PROCESS, pool) == nice
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < nice, "the caller was lowered"


def test_backbone_nice_is_validated() -> None:
    for bad in (-1, 20, 2.5, True):
        with pytest.raises(ConfigError, match="backbone_nice"):
            ScheduleConfig(backbone_nice=bad)


def test_onnxruntime_on_the_cpu_streams_one_crop_per_call(tiny_export: Path) -> None:
    with Analyzer(tiny_export, backend="onnxruntime") as a:
        assert a.backend.preferred_batch == 1
        assert a.engine.batch_size == 1
        frame = np.zeros((240, 320, 3), np.uint8)
        assert a.engine.batch_size == 1 and len(a.analyze(frame).faces) == 0


def test_a_video_files_stream_time_is_the_videos_own(tmp_path: Path) -> None:
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    stream = FrameStream(str(path))
    with stream:
        times = [frame.timestamp for frame in stream]
    assert np.allclose(np.diff(times), 0.1), times  # 10 frames/s, however fast it was read
    with FrameStream(str(path), live=True) as camera:
        first = next(iter(camera))
    assert abs(first.timestamp - time.time()) < 5  # live: capture time


class _NoClock:
    """A capture that says nothing about time (an iterable's wrapper does the same)."""

    def get(self, prop: int) -> float:
        return 0.0


def test_media_time_falls_back_to_frame_rate_and_never_goes_back() -> None:
    class Fps(_NoClock):
        def get(self, prop: int) -> float:
            return 20.0 if prop == cv2.CAP_PROP_FPS else 0.0  # no position: index / fps

    assert media_time(Fps(), 0, None) == 0.0
    assert media_time(Fps(), 3, 0.0) == pytest.approx(0.15)
    assert media_time(Fps(), 2, 0.5) == pytest.approx(0.55)  # never earlier than the last
    assert media_time(_NoClock(), 4, 0.0) is None


def test_a_waiting_stream_leaves_priorities_alone(tiny_export: Path) -> None:
    """A video file waits for its estimates: putting the backbone last would only slow it down."""
    with Analyzer(tiny_export, backend="onnxruntime", intra_op_threads=2) as a:
        (pool,) = a.backend.worker_threads
        before = os.getpriority(os.PRIO_PROCESS, pool)
        images = [index_frame(i) for i in range(3)]
        guarded(lambda: list(a.stream(iter(images), schedule=ScheduleConfig(backbone_nice=9), wait=True)))
        assert os.getpriority(os.PRIO_PROCESS, pool) == before


def test_openvino_threads_started_at_a_first_inference_are_lowered_too(tiny_export: Path) -> None:
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'facesdk[openvino]')")
    face = ScriptedDetector(lambda i: [(40.0, 40.0, 80.0, 80.0)])
    with Analyzer(tiny_export, backend="openvino", detector=face) as a:
        nice = min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + 6)
        images = [index_frame(i) for i in range(4)]
        schedule = ScheduleConfig(backbone_nice=nice)
        a.analyze(images[0])  # the plugin's threads start here, in a thread at the process's priority
        guarded(lambda: list(a.stream(iter(images), schedule=schedule, wait=False, clock=clock())))
        workers = a.backend.worker_threads
        assert workers, "OpenVINO's threads were not seen"
        alive = [t for t in workers if os.path.exists(f"/proc/self/task/{t}")]
        assert alive and all(os.getpriority(os.PRIO_PROCESS, t) == nice for t in alive)


def test_a_queued_crop_is_not_swapped_for_a_view_below_min_quality(tiny_export: Path) -> None:
    """From frame 1 on the detector is unsure of every face (score 0.05): those views fall below
    ``min_quality``, so the queued crops of frame 0 are the ones inferred."""
    sure = [(*box, 0.9) for box in BOXES]
    unsure = [(*box, 0.05) for box in BOXES]
    detector = ScriptedDetector(lambda i: sure if i == 0 else unsure)
    frame = painted_frame(0, BOXES, [1, 2, 3])
    good = assess_faces(frame, detector.detect(frame))[0].score
    bad = assess_faces(frame, ScriptedDetector(lambda i: unsure).detect(frame))[0].score
    assert bad < good
    gate = threading.Event()
    a = Analyzer(
        tiny_export,
        backend="onnxruntime",
        detector=detector,
        tracker=TrackerConfig(smoothing=0.0),
        min_quality=(good + bad) / 2,
    )
    a.backend = EncodingBackend(a.manifest.tasks, a.manifest.preprocess, a.manifest.max_batch, gate=gate)
    with a:
        results = gated_run(a, gate, 20)
    crops = [who(decode_face(face), 0) for face in results[-1].faces]
    assert [frame for frame, _ in crops] == [0, 0, 0], f"a low-quality view replaced a queued crop: {crops}"


def test_a_queued_better_view_is_not_swapped_for_a_newer_worse_one(tiny_export: Path) -> None:
    """Frame 12 shows faces 0 and 1 clearly better (detector score 0.99 against 0.75): both are asked
    for again while the backbone is held. The first holds the backbone with frame 12's crop; the
    second waits in the queue while frames 13-15 show the usual views, and must still be inferred
    from frame 12: a refresh from the newest frame would undo what it was asked for."""
    scores = {12: (0.99, 0.99, 0.75)}
    detector = ScriptedDetector(
        lambda i: [(*box, s) for box, s in zip(BOXES, scores.get(i, (0.75,) * 3), strict=True)]
    )
    gate = threading.Event()
    gate.set()
    a = Analyzer(tiny_export, backend="onnxruntime", detector=detector, tracker=TrackerConfig(smoothing=0.0))
    backend = EncodingBackend(a.manifest.tasks, a.manifest.preprocess, a.manifest.max_batch, gate=gate)
    a.backend = backend

    def until(calls: int) -> None:
        deadline = time.monotonic() + 10.0
        while len(backend.levels) < calls:
            assert time.monotonic() < deadline, (
                f"the backbone ran {len(backend.levels)} crops, expected {calls}"
            )
            time.sleep(0.005)

    def source() -> Iterator[np.ndarray]:
        for i, frame in enumerate(frames(0, 24)):
            if i == 6:
                until(3)  # the three new tracks' first estimates have landed
                gate.clear()  # hold the backbone from here on
            if i == 16:
                gate.set()
                until(5)  # both better views inferred before the stream goes on
            yield frame

    schedule = ScheduleConfig(refresh_s=60.0, max_crops_per_frame=3)
    with a:
        results = guarded(
            lambda: list(a.stream(source(), schedule=schedule, clock=clock(), wait=False, batch_size=1))
        )
    check_own_estimates(results)
    assert len(backend.levels) == 5
    crops = [who(decode_face(face), 0) for face in results[-1].faces]
    assert crops[:2] == [(12, 0), (12, 1)], f"the better views were not the ones inferred: {crops}"
    assert crops[2][0] < 6, "face 2 never had a better view: its first estimate stands"
