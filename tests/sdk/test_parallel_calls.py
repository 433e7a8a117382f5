"""Backbone calls at once: the engine runs as many as the backend says it runs well, never more,
a stream's classifier keeps that many calls going, and each face still gets its own estimate.

ONNX Runtime on a CPU says 2: one call of the edge backbone keeps two cores 1.71 busy, a second
call at the same time fills the gaps (docs/benchmarks/parallel_calls.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesdk import Analyzer
from facesdk.backends.base import parallel_calls
from facesdk.backends.onnxruntime import PARALLEL_CALLS_CPU, OnnxRuntimeBackend
from facesdk.backends.threads import usable_cores
from facesdk.contract.export_manifest import load_export_manifest
from facesdk.engine import Engine
from facesdk.errors import BackendError, ConfigError
from facesdk.results import Detection
from facesdk.scheduling import ScheduleConfig, StreamScheduler
from facesdk.streams import runner
from facesdk.streams.classifier import Classifier, Request
from facesdk.testing import CODE_SCALE, CountingBackend, EncodingBackend, ScriptedDetector
from facesdk.tracking import TrackerConfig
from tests.helpers import guarded
from tests.sdk.test_stream_mixups import BOXES, check_own_estimates, clock, decode_face, frames, who

CROP = np.zeros((32, 32, 3), np.uint8)


def hammer(engine: Engine, threads: int, calls: int) -> None:
    """``threads`` threads each running ``calls`` one-crop backbone calls."""
    workers = [
        threading.Thread(target=lambda: [engine.infer([CROP]) for _ in range(calls)]) for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert not any(w.is_alive() for w in workers)


@pytest.mark.parametrize("allowed", [None, 1, 2, 3])
def test_the_engine_runs_as_many_calls_at_once_as_the_backend_says(
    tiny_export: Path, allowed: int | None
) -> None:
    manifest = load_export_manifest(tiny_export)
    backend = CountingBackend(manifest.tasks, delay_s=0.05, parallel_calls=allowed)
    engine = Engine(backend, manifest)
    assert engine.parallel_calls == (allowed or 1)
    hammer(engine, threads=5, calls=4)
    assert sum(backend.calls) == 20
    assert backend.most_at_once == (allowed or 1)  # overlapped where allowed, never beyond


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2"])
def test_a_backend_that_says_nothing_sensible_is_called_one_at_a_time(
    tiny_export: Path, value: object
) -> None:
    backend = CountingBackend(load_export_manifest(tiny_export).tasks)
    backend.parallel_calls = value  # type: ignore[attr-defined]
    assert parallel_calls(backend) == 1


class Held(CountingBackend):
    """Each call waits at ``gate``; records how many calls were inside it when it was closed."""

    def __init__(self, *args: object, gate: threading.Event, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate, self.inside, self.inside_at_close = gate, 0, None

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            self.inside += 1
        try:
            assert self.gate.wait(10)
            return super().run(batch)
        finally:
            with self._lock:
                self.inside -= 1

    def close(self) -> None:
        self.inside_at_close = self.inside


def wait_for(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)
    assert condition(), "timed out"  # type: ignore[operator]


def test_closing_waits_for_every_call_in_progress(tiny_export: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    gate = threading.Event()
    backend = Held(manifest.tasks, gate=gate, parallel_calls=2)
    engine = Engine(backend, manifest)
    callers = [threading.Thread(target=engine.infer, args=([CROP],)) for _ in range(2)]
    for c in callers:
        c.start()
    wait_for(lambda: backend.inside == 2)  # both calls are inside the backend, held at the gate
    closer = threading.Thread(target=engine.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive() and backend.inside_at_close is None, "close did not wait for the calls"
    gate.set()
    for t in (closer, *callers):
        t.join(10)
        assert not t.is_alive()
    assert backend.inside_at_close == 0 and engine.closed
    with pytest.raises(BackendError, match="closed"):
        engine.infer([CROP])


def test_a_call_waiting_for_a_slot_when_the_engine_closes_is_told_so(tiny_export: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    gate = threading.Event()
    backend = Held(manifest.tasks, gate=gate)  # one call at a time
    engine = Engine(backend, manifest)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            engine.infer([CROP])
        except BackendError as exc:
            errors.append(exc)

    first, second = threading.Thread(target=call), threading.Thread(target=call)
    first.start()
    wait_for(lambda: backend.inside == 1)
    second.start()  # waits for the slot the first holds
    closer = threading.Thread(target=engine.close)
    time.sleep(0.1)
    closer.start()
    time.sleep(0.1)
    assert backend.inside == 1  # the second call never got in
    gate.set()
    for t in (first, second, closer):
        t.join(10)
        assert not t.is_alive()
    assert backend.calls == [1] and len(errors) == 1 and "closed" in str(errors[0])


def paced(items: Iterator[Any], seconds: float) -> Iterator[Any]:
    for item in items:
        time.sleep(seconds)
        yield item


def analyzer(export: Path, allowed: int, delay_s: float = 0.02, detector: Any = None) -> Analyzer:
    a = Analyzer(
        export,
        backend="onnxruntime",
        detector=detector or ScriptedDetector(lambda i: BOXES),
        tracker=TrackerConfig(smoothing=0.0),
    )
    a.backend = EncodingBackend(
        a.manifest.tasks, a.manifest.preprocess, a.manifest.max_batch, delay_s=delay_s, parallel_calls=allowed
    )
    return a


@pytest.mark.parametrize("wait", [True, False])
def test_a_stream_keeps_parallel_calls_going_and_each_face_gets_its_own_crop(
    tiny_export: Path, wait: bool
) -> None:
    with analyzer(tiny_export, allowed=2) as a:
        schedule = ScheduleConfig(refresh_s=0.2)
        source = frames(0, 28) if wait else paced(frames(0, 28), 0.02)  # live: estimates land meanwhile
        results = guarded(
            lambda: list(a.stream(source, schedule=schedule, clock=clock(), batch_size=1, wait=wait))
        )
        backend = a.backend
    assert backend.most_at_once == 2, "the classifier ran one call at a time"
    assert check_own_estimates(results) > 0
    if wait:
        assert all(f.estimated for f in results[-1].faces)
    else:  # the frames did not wait: every track's estimates joined it at some frame
        assert {f.track_id for r in results for f in r.faces if f.estimated} == {1, 2, 3}


def test_many_sources_with_parallel_calls_each_face_gets_its_own_sources_crop(tiny_export: Path) -> None:
    with analyzer(tiny_export, allowed=2) as a:
        sources = {f"cam{s}": frames(s, 25) for s in range(3)}
        results = guarded(
            lambda: list(a.streams(sources, schedule=ScheduleConfig(refresh_s=0.2), batch_size=1))
        )
        backend = a.backend
    assert backend.most_at_once == 2
    for s in range(3):
        mine = [r for r in results if r.source == f"cam{s}"]
        assert [r.index for r in mine] == list(range(25))
        for r in mine:
            for k, face in enumerate(r.faces):
                value = decode_face(face)
                if value is not None:
                    frame, slot = who(value, s)
                    assert slot == k and frame <= r.index


def test_a_failing_call_stops_every_classifier_worker(tiny_export: Path) -> None:
    a = Analyzer(tiny_export, backend="onnxruntime", detector=ScriptedDetector(lambda i: BOXES))
    with a:
        backend = CountingBackend(a.manifest.tasks, fail_on_call=3, delay_s=0.02, parallel_calls=2)
        a.backend = backend
        before = {t for t in threading.enumerate() if t.name.startswith("facesdk-classifier")}

        def run() -> None:
            list(a.stream(frames(0, 28), schedule=ScheduleConfig(enabled=False), clock=clock(), batch_size=1))

        with pytest.raises(BackendError, match="failing on call 3"):
            guarded(run)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = {t for t in threading.enumerate() if t.name.startswith("facesdk-classifier")} - before
        if not alive:
            break
        time.sleep(0.05)
    assert not alive, f"classifier workers left running: {sorted(t.name for t in alive)}"


def test_onnxruntime_on_a_cpu_runs_two_calls_at_once_by_default(tiny_export: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    with OnnxRuntimeBackend(manifest, tiny_export / "model.onnx", providers=["CPUExecutionProvider"]) as b:
        assert parallel_calls(b) == min(PARALLEL_CALLS_CPU, usable_cores())
    path = tiny_export / "model.onnx"
    with OnnxRuntimeBackend(manifest, path, providers=["CPUExecutionProvider"], parallel_calls=1) as b:
        assert parallel_calls(b) == 1
    with pytest.raises(ConfigError, match="parallel_calls"):
        OnnxRuntimeBackend(manifest, path, parallel_calls=0)


def test_onnxruntime_calls_at_once_give_each_batch_its_own_logits(tiny_export: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    path = tiny_export / "model.onnx"
    h, w = manifest.preprocess.input_size
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((1 + i % 3, 3, h, w)).astype(np.float32) for i in range(8)]
    with OnnxRuntimeBackend(manifest, path, providers=["CPUExecutionProvider"], parallel_calls=2) as b:
        alone = [b.run(x) for x in batches]
        together: list[dict[str, np.ndarray] | None] = [None] * len(batches)

        def run(i: int) -> None:
            for _ in range(3):
                together[i] = b.run(batches[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    for mine, ref in zip(together, alone, strict=True):
        assert mine is not None
        for name in ref:
            np.testing.assert_allclose(mine[name], ref[name], rtol=1e-5, atol=1e-5)


def requests(scheduler: StreamScheduler, n: int) -> list[Request]:
    det = Detection((0.0, 0.0, 32.0, 32.0), 0.9, ((8.0, 8.0),) * 5)
    return [Request(scheduler, i, None, det, CROP, 0.0) for i in range(n)]


@pytest.mark.parametrize("allowed", [True, False])
def test_extra_calls_wait_while_the_frame_path_is_behind(tiny_export: Path, allowed: bool) -> None:
    manifest = load_export_manifest(tiny_export)
    backend = CountingBackend(manifest.tasks, delay_s=0.03, parallel_calls=2)
    classifier = Classifier(Engine(backend, manifest), batch_size=1, extra_calls_allowed=lambda: allowed)
    try:
        assert classifier.workers == 2
        batch = requests(StreamScheduler(None), 12)
        classifier.submit(batch)
        for r in batch:
            r.wait(lambda: False)
        assert all(r.result is not None for r in batch)
    finally:
        classifier.close()
    assert sum(backend.calls) == 12
    assert backend.most_at_once == (2 if allowed else 1)


class Dropping:
    """Stands in for a live source's frame stream: only its count of dropped frames is read."""

    dropped = 0

    def close(self) -> None:
        pass


def test_the_runner_allows_extra_calls_only_after_a_calm_spell(
    tiny_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "CALM_S", 0.3)
    manifest = load_export_manifest(tiny_export)
    engine = Engine(CountingBackend(manifest.tasks, parallel_calls=2), manifest)
    sources = [Dropping(), Dropping()]
    lanes = {f"cam{i}": (s, StreamScheduler(TrackerConfig()), False, None) for i, s in enumerate(sources)}
    run = runner.StreamRun(engine, ScriptedDetector(lambda i: []), lanes)  # type: ignore[arg-type]
    try:
        assert run.classifier.extra_calls_allowed is not None
        keeps_up = run.classifier.extra_calls_allowed
        assert keeps_up()  # nothing dropped yet
        sources[1].dropped += 1
        assert not keeps_up()  # one source fell behind
        time.sleep(0.15)
        assert not keeps_up()
        time.sleep(0.25)
        assert keeps_up()  # calm for CALM_S since the last drop
        sources[0].dropped += 3
        assert not keeps_up()
    finally:
        run.close()


@pytest.mark.parametrize(
    ("allowed", "count", "calls"), [(None, 7, [7]), (2, 7, [4, 3]), (3, 7, [2, 3, 2]), (3, 2, [1, 1])]
)
def test_a_batch_is_shared_among_calls_at_once_and_comes_back_in_order(
    tiny_export: Path, allowed: int | None, count: int, calls: list[int]
) -> None:
    manifest = load_export_manifest(tiny_export)
    backend = EncodingBackend(manifest.tasks, manifest.preprocess, delay_s=0.05, parallel_calls=allowed)
    engine = Engine(backend, manifest)
    h, w = manifest.preprocess.input_size
    levels = [10 * (i + 1) for i in range(count)]
    crops = [np.full((h, w, 3), v, np.uint8) for v in levels]
    logits = engine.infer(crops)
    assert sorted(backend.calls) == sorted(calls)
    assert backend.most_at_once == len(calls)
    for task in manifest.tasks:
        assert (
            np.rint(logits[task.name][:, 0] * CODE_SCALE).astype(int).tolist() == levels
        )  # each crop its own row


def test_a_failing_share_fails_the_whole_batch(tiny_export: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    backend = CountingBackend(manifest.tasks, fail_on_call=2, delay_s=0.02, parallel_calls=2)
    with pytest.raises(BackendError, match="failing on call 2"):
        Engine(backend, manifest).infer([CROP] * 4)


class SlowDetector(ScriptedDetector):
    """Finds the three faces after ``seconds`` of work per frame."""

    def __init__(self, seconds: float) -> None:
        super().__init__(lambda i: BOXES)
        self.seconds = seconds

    def detect(self, frame: np.ndarray) -> list[Detection]:
        time.sleep(self.seconds)
        return super().detect(frame)


@pytest.mark.parametrize(("detect_s", "at_once"), [(0.0, 2), (0.03, 1)])
def test_a_busy_frame_path_keeps_the_second_call_back(
    tiny_export: Path, monkeypatch: pytest.MonkeyPatch, detect_s: float, at_once: int
) -> None:
    # one usable core: a frame path at 0.03 s of every 0.04 s takes 0.75 of it, above the half a
    # second call may leave it; without detection work it takes next to nothing
    monkeypatch.setattr(runner, "usable_cores", lambda: 1)
    monkeypatch.setattr(runner, "CALM_S", 0.5)
    with analyzer(tiny_export, allowed=2, delay_s=0.05, detector=SlowDetector(detect_s)) as a:
        source = paced(frames(0, 28), 0.04)
        schedule = ScheduleConfig(refresh_s=0.1)
        results = guarded(
            lambda: list(a.stream(source, schedule=schedule, clock=clock(), batch_size=1, live=True))
        )
        backend = a.backend
    assert len(results) > 0 and sum(backend.calls) > 6
    assert backend.most_at_once == at_once
