"""benchmarks/stream.py: its measurements from known inputs, its verdict, and a run at tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import stream
from benchmarks.stream_live import (
    SLOTS,
    TILE,
    ComeAndGo,
    LiveFrame,
    PacedCamera,
    first_estimates,
    summarise_live,
    worst,
    write_video,
)
from benchmarks.stream_report import best_split, checks
from facesdk.backends.threads import usable_cores
from facesdk.scheduling import ScheduleConfig


def _centre(scene: ComeAndGo, slot: int, i: int) -> tuple[float, float]:
    x, y = SLOTS[slot]
    return x + TILE / 2 + scene.sway(i), y + TILE / 2


def _camera(count: int, fps: float = 10.0) -> PacedCamera:
    camera = PacedCamera(Path("unused.avi"), fps, count)
    camera.times = [100.0 + i / fps for i in range(count)]
    return camera


def test_first_estimate_is_timed_from_the_frame_a_face_appears_in() -> None:
    """Delay = first result showing the visit estimated - delivery of the visit's first frame."""
    scene = ComeAndGo(fps=10.0, cycle_s=1.2, on_s=0.6)  # 12 frames a cycle, slot k starts at 2k, 6 frames on
    camera = _camera(30)
    frames = []
    for i in range(30):
        faces = []
        for slot in range(6):
            if scene.visible(slot, i):
                begin = scene.episode(slot, i)
                estimated = i >= begin + 3 and not (slot == 1 and begin == 14)  # one visit never estimated
                faces.append((*_centre(scene, slot, i), estimated, 0.0))
        if i % 4 != 2:  # frames dropped: the visit still counts from the frame it appeared in
            frames.append(LiveFrame(None, i, camera.times[i], 5.0, tuple(faces)))
    found = first_estimates(frames, camera.times, scene, warm=12)
    visits = scene.episodes(12, 30)
    assert found["episodes"] == len(visits) == 7 and found["never"] == 1
    delays = sorted(0.4 if (b + 3) % 4 == 2 else 0.3 for s, b in visits if (s, b) != (1, 14))
    expected = np.percentile([*delays, scene.on_s], [50, 95])
    assert found["delay_s"]["p50"] == pytest.approx(expected[0])
    assert found["delay_s"]["p95"] == pytest.approx(expected[1])
    assert found["delay_s"]["max"] == pytest.approx(scene.on_s)


def test_dropped_share_counts_the_frames_each_camera_delivered_after_warm_up() -> None:
    cameras = {"a": _camera(20), "b": _camera(20)}
    frames = [LiveFrame("a", i, 0.0, 10.0, ((1.0, 1.0, True, 0.5),)) for i in range(20)]
    frames += [LiveFrame("b", i, 0.0, 30.0, ((1.0, 1.0, i % 3 > 0, 0.2),)) for i in range(0, 20, 2)]
    summary = summarise_live(frames, cameras, warm=4)
    assert summary["dropped_by_camera"] == {"a": 0.0, "b": pytest.approx(0.5)}
    assert summary["dropped_share"] == pytest.approx(0.5)  # the worst camera
    assert summary["results"] == 16 + 8
    assert summary["unestimated_share"] == pytest.approx(3 / 24)  # b's indices 6, 12, 18
    assert summary["estimate_age_s"]["max"] == pytest.approx(0.5)
    assert summary["latency_ms"]["p50"] == pytest.approx(10.0)


def test_worst_round_takes_the_worse_number_of_each_kind() -> None:
    a = {"dropped_share": 0.01, "latency_ms": {"p95": 70.0, "max": 90.0}, "delivered_fps": 25.0, "case": "x"}
    b = {"dropped_share": 0.03, "latency_ms": {"p95": 50.0, "max": None}, "delivered_fps": 24.0, "case": "x"}
    assert worst([a, b]) == {
        "dropped_share": 0.03,
        "latency_ms": {"p95": 70.0, "max": None},
        "delivered_fps": 24.0,
        "case": "x",
    }


def _live_row(case: str, backend: str, cameras: int = 1, **numbers: float | None) -> dict:
    row = {
        "case": case,
        "backend": backend,
        "cameras": cameras,
        "dropped_share": numbers.get("dropped", 0.0),
        "latency_ms": {"p95": numbers.get("p95", 40.0)},
        "estimate_age_s": {"p95": 0.5, "max": numbers.get("age", 0.9)},
        "unestimated_share": numbers.get("unestimated", 0.0),
    }
    if "first" in numbers:
        row["first_estimate"] = {"delay_s": {"p95": numbers["first"]}, "episodes": 10, "never": 0}
    return row


def _judged(rows: list[dict]) -> dict[tuple[str, str], bool | None]:
    return {(c["run"], c["target"]): c["passed"] for c in checks({"live": rows})}


def test_verdict_judges_each_number_against_its_target() -> None:
    rows = [
        _live_row("six faces", "onnxruntime", dropped=0.02, p95=60.5, age=1.0, unestimated=0.011),
        _live_row("come and go", "onnxruntime", first=0.7),
        _live_row("come and go", "auto", first=0.7),
        _live_row("4 cameras", "auto", 4, dropped=0.019, age=1.6),
        _live_row("4 cameras", "onnxruntime", 4, dropped=0.5, age=3.0),
    ]
    judged = _judged(rows)
    assert judged["six faces, onnxruntime", "frames dropped"] is True  # at the limit
    assert judged["six faces, onnxruntime", "latency p95"] is False
    assert judged["six faces, onnxruntime", "oldest estimate"] is True
    assert judged["six faces, onnxruntime", "faces without an estimate"] is False
    assert judged["come and go, onnxruntime", "first estimate p95"] is True  # <= 1 s with ORT FP32
    assert judged["come and go, auto", "first estimate p95"] is False  # <= 0.5 s with auto
    assert judged["4 cameras, auto", "frames dropped (worst camera)"] is True
    assert judged["4 cameras, auto", "oldest estimate"] is False  # <= 1.5 s
    assert judged["4 cameras, onnxruntime", "oldest estimate"] is None  # reported, no target


def test_a_number_not_measured_fails_its_target() -> None:
    judged = _judged([_live_row("one face", "auto", p95=None)])
    assert judged["one face, auto", "latency p95"] is False


def test_best_split_prefers_a_split_that_serves_over_a_faster_one_that_does_not() -> None:
    def row(det: int, p95: float, dropped: float) -> dict:
        return {"runtime": "onnxruntime", "detector_threads": det, "dropped_share": dropped,
                "latency_ms": {"p95": p95}, "estimate_age_s": {"p95": 0.5, "max": 0.9}}  # fmt: skip

    best = best_split([row(1, 30.0, 0.10), row(2, 50.0, 0.0), row(2, 45.0, 0.01)])
    assert best["onnxruntime"]["latency_ms"]["p95"] == 45.0


def test_documented_command_names_no_local_files() -> None:
    argv = ["--detector", "../shared/models/yunet.onnx", "--live-seconds", "1", "--work=/tmp/w",
            "--model", "/work/x/export", "--out", "/tmp/doc/stream.md", "--thread-split"]  # fmt: skip
    command = stream.doc_command(argv)
    assert command == "python -m benchmarks.stream --live-seconds 1 --model EXPORT_DIR --thread-split"


def test_come_and_go_video_shows_its_timetable_as_it_loops(
    tmp_path: Path, yunet_path: Path, astronaut_bgr: np.ndarray
) -> None:
    """Read back through the looping camera, the faces around every appearance and disappearance,
    over two cycles and a bit, are the tiles the timetable says are showing at that frame index."""
    from facesdk.faces.detector import DetectorConfig, FaceDetector

    detector = FaceDetector(yunet_path, DetectorConfig(max_side=640))
    scene = ComeAndGo(fps=10.0)  # 60 frames a cycle
    video = scene.write(tmp_path / "come_and_go.avi", astronaut_bgr)
    count = 2 * scene.frames + 12
    edges = {scene.start(s) + d for s in range(6) for d in (-1, 0, scene.on_frames - 1, scene.on_frames)}
    checked = 0
    for i, frame in enumerate(PacedCamera(video, 1000.0, count)):
        if i % scene.frames in {e % scene.frames for e in edges}:
            found = [scene.slot_of(d.box[0] + d.box[2] / 2, d.box[1] + d.box[3] / 2, i)
                     for d in detector.detect(frame)]  # fmt: skip
            assert sorted(found) == [s for s in range(6) if scene.visible(s, i)], i
            checked += 1
    assert checked > 2 * len(edges)


def test_paced_camera_loops_its_file(tmp_path: Path) -> None:
    shades = [np.full((720, 1280, 3), v, np.uint8) for v in (40, 120, 200)]
    video = write_video(tmp_path / "three.avi", shades, 25.0)
    frames = list(PacedCamera(video, 1000.0, 7))
    assert [int(f.mean() // 80) for f in frames] == [0, 1, 2, 0, 1, 2, 0]


@pytest.mark.slow
def test_stream_benchmark_tiny(
    tmp_path: Path, tiny_export: Path, yunet_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("skimage", reason="the benchmark's videos come from skimage.data")
    pytest.importorskip("matplotlib", reason="the benchmark plots with matplotlib")
    monkeypatch.setenv("FACESDK_HOME", str(tmp_path / "home"))  # auto's cache
    out = tmp_path / "doc" / "stream.md"
    argv = ["--model", str(tiny_export), "--detector", str(yunet_path), "--rounds", "1", "--live-seconds", "0.6",
            "--warmup-seconds", "0.3", "--cameras", "2", "--frames", "6", "--frames-unscheduled", "3",
            "--detector-sizes", "640", "--detector-repeats", "1", "--thread-split", "--work", str(tmp_path / "work"),
            "--out", str(out)]  # fmt: skip
    assert stream.main(argv) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    live = {(r["case"], r["backend"]): r for r in report["live"]}
    assert set(live) == {(c, b) for c in ("one face", "six faces", "come and go", "2 cameras")
                         for b in ("onnxruntime", "auto")}  # fmt: skip
    for (case, _), row in live.items():
        faces = {"one face": 1, "come and go": None}.get(case, 6)
        assert row["faces_per_frame"] == faces if faces else 0 < row["faces_per_frame"] < 6, row
        assert 0.0 <= row["dropped_share"] <= 1.0 and row["latency_ms"]["p50"] > 0
        assert len(row["dropped_by_camera"]) == (2 if "cameras" in case else 1)
    assert "first_estimate" in live["come and go", "auto"]
    rows = {(r["video"], r["schedule"], r["overlap"], r["backend"]): r for r in report["rows"]}
    assert len(rows) == 10
    for (video, schedule, _, _), row in rows.items():
        faces = 1 if video == "one" else 6
        assert row["faces_per_frame"] == faces, row
        assert row["crops_per_frame"] <= 2 if schedule else row["crops_per_frame"] == faces
    text = out.read_text()
    assert report["cpu"]["model"] in text and "targets met" in text
    assert "python -m benchmarks.stream --model EXPORT_DIR" in text and str(tmp_path) not in text
    assert "shared" not in text
    assert all(f"- {c['run']}: " in text for c in report["checks"])
    split = {(r["runtime"], r["detector_threads"], r["backbone_threads"]) for r in report["thread_split"]}
    assert {("onnxruntime", d, b) for d in (1, 2) for b in (1, 2)} <= split
    assert "- Best for onnxruntime" in text
    priority = {(r["case"], r["backbone_nice"], r["parallel_calls"]) for r in report["priority"]}
    nice, calls = ScheduleConfig().backbone_nice, min(2, usable_cores())  # ONNX Runtime's default on a CPU
    assert priority == {
        (c, n, k)
        for c in ("six faces", "2 cameras")
        for n, k in ((0, calls), (nice, 1), (nice, calls), (19, calls))
    }
    assert "The backbone below the frame path" in text and "calls at once" in text
