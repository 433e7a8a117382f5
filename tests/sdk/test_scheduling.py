"""Per-track scheduling in streams, counted with a fake backend: who is inferred, when, and how many."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from facesdk import Analyzer, FaceResult, Prediction
from facesdk.errors import ConfigError
from facesdk.faces.detector import STREAM_MAX_SIDE
from facesdk.scheduling import ScheduleConfig, StreamScheduler
from facesdk.testing import CountingBackend, ScriptedDetector, index_frame
from facesdk.tracking import IoUTracker, TrackerConfig

FPS = 25.0


def _analyzer(export: Path, script: Callable[[int], Sequence[Sequence[float]]], **kwargs: object) -> Analyzer:
    analyzer = Analyzer(export, backend="onnxruntime", detector=ScriptedDetector(script), **kwargs)
    analyzer.backend = CountingBackend(analyzer.manifest.tasks, analyzer.manifest.max_batch)
    return analyzer


def _clock() -> Callable[[], float]:
    """Stream time of a steady 25 frames/s camera: frame i is stamped i / 25 s."""
    return (i / FPS for i in itertools.count()).__next__


def _run(analyzer: Analyzer, frames: int, **kwargs: object) -> list:
    return list(analyzer.stream((index_frame(i) for i in range(frames)), clock=_clock(), **kwargs))


def _boxes(count: int) -> list[tuple[float, float, float, float]]:
    return [(10.0 + 100.0 * k, 40.0, 60.0, 60.0) for k in range(count)]


def test_config_refuses_bad_values() -> None:
    for bad in ({"refresh_s": 0}, {"refresh_s": math.inf}, {"max_crops_per_frame": 0}):
        with pytest.raises(ConfigError):
            ScheduleConfig(**bad)
    with pytest.raises(ConfigError, match="integer"):
        ScheduleConfig(max_crops_per_frame=True)
    with pytest.raises(ConfigError, match="better_area_ratio"):
        ScheduleConfig(better_area_ratio=1.0)
    with pytest.raises(ConfigError, match="better_score_margin"):
        ScheduleConfig(better_score_margin=0.0)
    assert ScheduleConfig().refresh_s <= 1.0


def test_new_track_is_inferred_in_its_first_frame_then_carried(tiny_export: Path) -> None:
    with _analyzer(tiny_export, lambda i: _boxes(1)) as analyzer:
        results = _run(analyzer, 10)
        assert analyzer.backend.crops == 1
    first, rest = results[0].faces[0], [r.faces[0] for r in results[1:]]
    assert first.inferred and first.estimate_age_s == 0.0 and first.estimated
    assert all(not f.inferred and f.track_id == first.track_id for f in rest)
    assert [f.attributes for f in rest] == [first.attributes] * len(rest)
    assert [f.estimate_age_s for f in rest] == pytest.approx([i / FPS for i in range(1, 10)])
    assert {"age", "gender", "emotion"} <= set(rest[-1].attributes)


def test_no_estimate_exceeds_the_refresh_interval_and_the_budget_holds(tiny_export: Path) -> None:
    schedule = ScheduleConfig(refresh_s=0.5, max_crops_per_frame=2)
    with _analyzer(tiny_export, lambda i: _boxes(4), schedule=schedule) as analyzer:
        results = _run(analyzer, 100)
        crops = analyzer.backend.crops
    per_frame = [sum(f.inferred for f in r.faces) for r in results]
    assert max(per_frame) <= 2
    assert crops == sum(per_frame)
    ages = [f.estimate_age_s for r in results[2:] for f in r.faces]  # all four estimated from frame 1 on
    assert max(ages) <= 0.5 + 1e-9
    assert all(f.estimated for r in results[2:] for f in r.faces)
    assert crops < 4 * 100 / 4, f"scheduling saved too little: {crops} crops for 400 faces"


def test_an_uneven_frame_rate_does_not_let_estimates_overrun(tiny_export: Path) -> None:
    # five quick frames, then a slow one; one crop per frame. Judged by the last interval alone,
    # both estimates (0.2 s old at t=0.2, 0.2 + 0.04 < 0.45) fall due together at the slow frame,
    # where only one can be refreshed: the other is shown 0.5 s old
    times = itertools.accumulate(itertools.cycle([0.04] * 5 + [0.3]), initial=0.0)
    with _analyzer(
        tiny_export, lambda i: _boxes(2), schedule=ScheduleConfig(refresh_s=0.45, max_crops_per_frame=1)
    ) as analyzer:
        # sequential: with overlap the detect worker may plan frame t+1 before frame t's estimate has
        # landed, and a track still waiting for its estimate is not asked for again (a frame later)
        frames = (index_frame(i) for i in range(120))
        results = list(analyzer.stream(frames, clock=times.__next__, overlap=False))
    assert all(f.estimated for r in results[1:] for f in r.faces)
    ages = [f.estimate_age_s for r in results[7:] for f in r.faces]  # after the first slow interval
    assert max(ages) <= 0.45 + 1e-9


def test_over_budget_new_tracks_wait_at_most_ceil_n_over_budget_frames(tiny_export: Path) -> None:
    script = lambda i: _boxes(2) if i < 3 else _boxes(7)  # noqa: E731 - five faces appear at frame 3
    with _analyzer(tiny_export, script, schedule=ScheduleConfig(max_crops_per_frame=2)) as analyzer:
        results = _run(analyzer, 8)
    inferred = [[f.track_id for f in r.faces if f.inferred] for r in results]
    assert inferred[:3] == [[1, 2], [], []]
    assert inferred[3:6] == [[3, 4], [5, 6], [7]]  # new tracks first, oldest-seen first, two per frame
    assert all(f.estimated for f in results[5].faces)
    waiting = [f for f in results[3].faces if f.track_id >= 5]
    assert waiting and all(not f.estimated and not f.inferred for f in waiting)


def test_a_new_track_goes_before_a_due_refresh(tiny_export: Path) -> None:
    script = lambda i: _boxes(1) if i < 4 else _boxes(2)  # noqa: E731 - track 2 appears at frame 4
    schedule = ScheduleConfig(refresh_s=0.19, max_crops_per_frame=1)  # track 1 is due again at frame 4
    with _analyzer(tiny_export, script, schedule=schedule) as analyzer:
        results = _run(analyzer, 6)
    inferred = [[f.track_id for f in r.faces if f.inferred] for r in results]
    assert inferred == [[1], [], [], [], [2], [1]]


def test_a_clearly_better_view_is_inferred_before_the_refresh(tiny_export: Path) -> None:
    def script(i: int) -> list[tuple[float, ...]]:
        if i < 5:
            return [(100.0, 40.0, 50.0, 50.0, 0.80)]
        if i < 10:
            return [(95.0, 35.0, 65.0, 65.0, 0.80)]  # 1.69x the area
        return [(95.0, 35.0, 65.0, 65.0, 0.95)]  # score +0.15

    with _analyzer(tiny_export, script) as analyzer:
        results = _run(analyzer, 12)
    inferred = [i for i, r in enumerate(results) if r.faces[0].inferred]
    assert inferred == [0, 5, 10]


def test_scheduling_off_or_no_tracking_infers_every_face_every_frame(tiny_export: Path) -> None:
    for kwargs in ({"schedule": ScheduleConfig(enabled=False)}, {"track": False}):
        with _analyzer(tiny_export, lambda i: _boxes(3)) as analyzer:
            results = _run(analyzer, 6, **kwargs)
            assert analyzer.backend.crops == 18
        assert all(f.inferred and f.estimate_age_s == 0.0 for r in results for f in r.faces)


def test_analyze_infers_every_face(tiny_export: Path) -> None:
    with _analyzer(tiny_export, lambda i: _boxes(3)) as analyzer:
        for _ in range(3):
            assert all(f.inferred for f in analyzer.analyze(index_frame(0)).faces)
        assert analyzer.backend.crops == 9


def test_streams_schedule_each_source(tiny_export: Path) -> None:
    with _analyzer(
        tiny_export, lambda i: _boxes(3), schedule=ScheduleConfig(max_crops_per_frame=2)
    ) as analyzer:
        sources = {"a": [index_frame(i) for i in range(6)], "b": [index_frame(i) for i in range(6)]}
        results = list(analyzer.streams(sources))
        crops = analyzer.backend.crops
    assert len(results) == 12 and crops == 6  # three tracks per source, each inferred once
    for name in ("a", "b"):
        mine = [r for r in results if r.source == name]
        assert [r.index for r in mine] == list(range(6))
        assert [sum(f.inferred for f in r.faces) for r in mine] == [2, 1, 0, 0, 0, 0]


def _face(x: float, p_male: float) -> FaceResult:
    gender = Prediction.from_probs(("male", "female"), [p_male, 1 - p_male])
    return FaceResult(box=(x, 10.0, 50.0, 50.0), score=0.9, landmarks=(), attributes={"gender": gender})


def test_smoothing_weighs_the_old_estimate_by_alpha() -> None:
    tracker = IoUTracker(TrackerConfig(smoothing=0.75))
    tracker.update([_face(0, p_male=1.0)])
    assert tracker.update([_face(1, p_male=0.0)])[0].gender.probs["male"] == pytest.approx(0.75)


def test_smoothing_runs_once_per_inference_not_once_per_frame() -> None:
    scheduler = StreamScheduler(TrackerConfig(smoothing=0.75), ScheduleConfig(refresh_s=1.0))
    det = _face(0, 0.5).detection

    def frame(t: float, p_male: float | None) -> FaceResult:
        plan = scheduler.plan([det], t)
        assert bool(plan.infer) == (p_male is not None)
        inferred = [] if p_male is None else [_face(0, p_male)]
        return scheduler.merge(plan, inferred)[0]

    assert frame(0.0, 1.0).gender.probs["male"] == pytest.approx(1.0)
    carried = [frame(0.1 * k, None).gender.probs["male"] for k in range(1, 9)]
    assert carried == pytest.approx([1.0] * 8)
    # at 0.9 s the estimate would pass 1 s by the next frame: refreshed, one smoothing step
    assert frame(0.9, 0.0).gender.probs["male"] == pytest.approx(0.75)
    later = [frame(0.9 + 0.1 * k, None) for k in range(1, 9)]
    assert [f.gender.probs["male"] for f in later] == pytest.approx([0.75] * 8)
    assert [f.estimate_age_s for f in later] == pytest.approx([0.1 * k for k in range(1, 9)])


def test_streams_detect_at_the_stream_size_and_single_images_at_full_size(
    tiny_export: Path, yunet_path: Path
) -> None:
    with Analyzer(tiny_export, backend="onnxruntime", detector=yunet_path) as analyzer:
        assert analyzer.detector.config.max_side == 1280
        assert analyzer.stream_detector.config.max_side == STREAM_MAX_SIDE == 640
        assert analyzer.stream_detector.config.score_threshold == analyzer.detector.config.score_threshold
    scripted = ScriptedDetector(lambda i: [])
    with Analyzer(tiny_export, backend="onnxruntime", detector=scripted) as analyzer:
        assert analyzer.stream_detector is scripted


def _frames(count: int | None) -> Iterator[np.ndarray]:
    for i in itertools.count() if count is None else range(count):
        yield index_frame(i % 60000)


def test_waiting_refreshes_rank_by_how_old_their_estimate_is_not_when_they_were_asked() -> None:
    """Track 1's estimate (crop at 0.0 s) is older than track 2's (crop at 0.5 s, landed late), so
    track 1's refresh must go first even though track 2 was asked later, at a larger age."""
    scheduler = StreamScheduler(TrackerConfig(smoothing=0.0), ScheduleConfig(refresh_s=0.9))
    dets = [_face(0, 0.5).detection, _face(200, 0.5).detection]
    keys: dict[int | None, tuple[float, ...]] = {}

    def plan(t: float) -> None:
        p = scheduler.plan(dets, t)
        for i, key in zip(p.infer, p.priorities, strict=True):
            keys.setdefault(p.track_ids[i], key)

    first = scheduler.plan(dets, 0.0)
    one, two = first.track_ids
    assert first.infer == (0, 1)
    scheduler.deliver(one, _face(0, 0.9), 0.0)  # track 1 answered at once
    for k in range(1, 40):  # 25 frames/s; track 1 comes due again near 0.86 s, track 2 still waits
        plan(k / FPS)
    scheduler.deliver(two, _face(200, 0.9), 0.5)  # track 2's crop of 0.5 s lands at 1.6 s
    plan(1.64)
    assert set(keys) == {one, two}
    assert keys[one] < keys[two], f"track 1 (estimate of 0.0 s) ranks after track 2 (0.5 s): {keys}"
