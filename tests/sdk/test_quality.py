"""Face quality: monotone in blur, size and yaw, blind to roll; the min_quality skip option."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facesdk import Analyzer
from facesdk.errors import ConfigError
from facesdk.faces import FaceDetector, umeyama_similarity
from facesdk.faces.analysis import SKIPPED_LOW_QUALITY
from facesdk.faces.quality import (
    combine,
    estimate_yaw,
    face_quality,
    pose_score,
    similarity_transform,
    size_score,
)
from facesdk.results import FaceResult, Quality

# A head as five 3-D points (x right, y down, z towards the camera), eyes half a unit apart
# each side: right eye, left eye, nose tip, right and left mouth corners (person's right/left).
HEAD = np.array(
    [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.9, 0.8], [-0.8, 1.6, 0.0], [0.8, 1.6, 0.0]],
    dtype=np.float64,
)
BLURRED = 6.0  # Gaussian sigma that leaves the astronaut's face detectable but soft


def head_landmarks(yaw_deg: float, roll_deg: float = 0.0, scale: float = 30.0) -> np.ndarray:
    """The five landmarks of HEAD turned by ``yaw`` and rolled in-plane, seen orthographically."""
    yaw, roll = math.radians(yaw_deg), math.radians(roll_deg)
    turn = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    flat = (HEAD @ turn.T)[:, :2]
    spin = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    return flat @ spin.T * scale + np.array([200.0, 150.0])


@pytest.fixture(scope="module")
def detector(yunet_path: Path) -> FaceDetector:
    return FaceDetector(yunet_path)


def one_quality(detector: FaceDetector, frame: np.ndarray) -> Quality:
    detections = detector.detect(frame)
    assert len(detections) == 1, f"expected the astronaut's one face, found {len(detections)}"
    return face_quality(frame, detections[0])


def test_quality_falls_as_the_face_is_blurred(detector: FaceDetector, astronaut_bgr: np.ndarray) -> None:
    sigmas = (0.0, 1.0, 2.0, 3.0, 4.0, BLURRED)
    found = [
        one_quality(detector, astronaut_bgr if s == 0 else cv2.GaussianBlur(astronaut_bgr, (0, 0), s))
        for s in sigmas
    ]
    scores, sharpness = [q.score for q in found], [q.sharpness for q in found]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), scores
    assert all(a > b for a, b in zip(sharpness, sharpness[1:], strict=False)), sharpness
    assert sharpness[0] > 0.9 and sharpness[-1] < 0.2


def test_quality_falls_as_the_face_shrinks(detector: FaceDetector, astronaut_bgr: np.ndarray) -> None:
    scales = (1.0, 0.75, 0.5, 0.35, 0.25)
    found = [
        one_quality(detector, cv2.resize(astronaut_bgr, None, fx=k, fy=k, interpolation=cv2.INTER_AREA))
        for k in scales
    ]
    scores, sizes = [q.score for q in found], [q.size for q in found]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), scores
    assert all(a > b for a, b in zip(sizes, sizes[1:], strict=False)), sizes


def test_every_component_is_in_range_and_the_score_is_their_geometric_mean(
    detector: FaceDetector, astronaut_bgr: np.ndarray
) -> None:
    q = one_quality(detector, astronaut_bgr)
    parts = (q.size, q.sharpness, q.pose, q.detector)
    assert all(0.0 < p <= 1.0 for p in parts)
    assert q.score == pytest.approx(float(np.prod(parts)) ** 0.25)
    assert combine(0.0, 1.0, 1.0, 1.0) == 0.0


def test_size_component_ramps_on_a_log_scale() -> None:
    assert size_score((0, 0, 16, 16)) == 0.0
    assert size_score((0, 0, 112, 112)) == 1.0
    assert size_score((0, 0, 300, 300)) == 1.0
    assert size_score((0, 0, 16 * math.sqrt(7), 16 * math.sqrt(7))) == pytest.approx(0.5)


def test_pose_falls_as_the_head_turns_further_away() -> None:
    yaws = (0, 10, 20, 30, 45, 60, 75)
    poses = [pose_score(head_landmarks(y)) for y in yaws]
    assert poses[0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(poses, poses[1:], strict=False)), poses
    for y in yaws:  # turning the other way is as bad
        assert pose_score(head_landmarks(-y)) == pytest.approx(pose_score(head_landmarks(y)))
    for y in (10, 30, 45, 60):  # the estimate is an angle, not only an order
        assert estimate_yaw(head_landmarks(y)) == pytest.approx(y, abs=6.0)


@pytest.mark.parametrize("roll", [5.0, 30.0, -45.0, 90.0, 170.0])
def test_roll_does_not_lower_pose(roll: float) -> None:
    assert pose_score(head_landmarks(0.0, roll)) == pytest.approx(1.0)
    for yaw in (15.0, 40.0, 70.0):
        assert pose_score(head_landmarks(yaw, roll)) == pytest.approx(
            pose_score(head_landmarks(yaw)), abs=1e-9
        )


def test_closed_form_alignment_matches_umeyama() -> None:
    src = head_landmarks(25.0, 20.0)
    dst = head_landmarks(0.0, 0.0, scale=12.0)
    np.testing.assert_allclose(similarity_transform(src, dst), umeyama_similarity(src, dst), atol=1e-9)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True, float("nan")])
def test_min_quality_is_validated(tiny_export: Path, yunet_path: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match="min_quality"):
        Analyzer(tiny_export, backend="onnxruntime", detector=yunet_path, min_quality=bad)


class CountingBackend:
    """Wraps a backend and counts the faces it is given."""

    def __init__(self, inner: object) -> None:
        self.inner, self.faces = inner, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.faces += len(batch)
        return self.inner.run(batch)


def counted(analyzer: Analyzer) -> CountingBackend:
    backend = CountingBackend(analyzer.backend)
    analyzer.backend = backend  # type: ignore[assignment]
    return backend


@pytest.fixture()
def blurred(astronaut_bgr: np.ndarray) -> np.ndarray:
    """The astronaut blurred until its face is detectable but below quality 0.7."""
    return cv2.GaussianBlur(astronaut_bgr, (0, 0), BLURRED)


@pytest.fixture()
def picky(tiny_export: Path, yunet_path: Path) -> Iterator[Analyzer]:
    """An Analyzer that skips the backbone for faces below quality 0.7."""
    with Analyzer(tiny_export, backend="onnxruntime", detector=yunet_path, min_quality=0.7) as a:
        yield a


def stream_one_sharp_frame(
    a: Analyzer, sharp: np.ndarray, blurred: np.ndarray, **options: Any
) -> list[FaceResult]:
    """The first face of each frame of a four-frame stream (blurred, sharp, blurred, blurred)."""
    return [r.faces[0] for r in a.stream([blurred, sharp, blurred, blurred], **options)]


def test_every_result_carries_its_quality(analyzer: Analyzer, astronaut_bgr: np.ndarray) -> None:
    face = analyzer.analyze(astronaut_bgr).faces[0]
    assert face.quality is not None and face.quality.score > 0.8
    assert face.estimated and face.inferred
    assert SKIPPED_LOW_QUALITY not in analyzer.stats()  # the option is off


def test_a_single_image_below_the_threshold_is_not_estimated(
    picky: Analyzer, astronaut_bgr: np.ndarray, blurred: np.ndarray
) -> None:
    backend = counted(picky)
    sharp, soft = picky.analyze(astronaut_bgr).faces[0], picky.analyze(blurred).faces[0]
    assert backend.faces == 1  # only the sharp face reached the backbone
    assert sharp.estimated and sharp.inferred and sharp.quality.score >= 0.7
    assert not soft.estimated and not soft.inferred and soft.attributes == {}
    assert soft.quality is not None and soft.quality.score < 0.7
    assert picky.stats()[SKIPPED_LOW_QUALITY]["count"] == 1.0
    restored = FaceResult.from_json(soft.to_json())
    assert restored == soft


def test_batch_skips_and_keeps_each_frames_logits(
    picky: Analyzer, astronaut_bgr: np.ndarray, blurred: np.ndarray
) -> None:
    shifted = np.roll(astronaut_bgr, 40, axis=1)
    alone = [picky.analyze(f).faces[0] for f in (astronaut_bgr, shifted)]
    backend = counted(picky)
    results = picky.analyze_batch([astronaut_bgr, blurred, shifted])
    assert backend.faces == 2
    first, soft, last = (r.faces[0] for r in results)
    assert not soft.estimated and not soft.inferred
    for got, want in zip((first, last), alone, strict=True):
        for task, prediction in want.attributes.items():
            assert got.attributes[task].probs == pytest.approx(prediction.probs, abs=1e-5)


def test_a_stream_keeps_the_tracks_last_estimate(
    picky: Analyzer, astronaut_bgr: np.ndarray, blurred: np.ndarray
) -> None:
    backend = counted(picky)
    faces = stream_one_sharp_frame(picky, astronaut_bgr, blurred)
    assert backend.faces == 1
    # Frame 0: a new track, scheduled and skipped; frame 1: still due, inferred; frames 2-3:
    # the estimate is fresh, so the scheduler sends nothing (nothing more to skip).
    assert picky.stats()[SKIPPED_LOW_QUALITY]["count"] == 1.0
    assert len({f.track_id for f in faces}) == 1
    assert all(f.quality is not None for f in faces)  # carried faces are measured too
    assert faces[2].quality.score < 0.7 <= faces[1].quality.score
    assert not faces[0].estimated and not faces[0].inferred  # nothing to keep yet
    assert faces[1].estimated and faces[1].inferred and faces[1].estimate_age_s == 0.0
    for later in faces[2:]:
        assert not later.inferred and later.attributes == faces[1].attributes
        assert later.estimate_age_s >= 0.0
    assert faces[3].estimate_age_s >= faces[2].estimate_age_s


def test_analyze_command_takes_min_quality(
    tmp_path: Path, tiny_export: Path, yunet_path: Path, astronaut_bgr: np.ndarray
) -> None:
    from facesdk.cli import main

    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), astronaut_bgr)
    argv = ["analyze", str(image), "--model", str(tiny_export), "--detector", str(yunet_path)]
    for threshold, estimated in (("0.5", True), ("0.99", False)):
        out = tmp_path / f"out{threshold}.jsonl"
        assert main([*argv, "--json", str(out), "--min-quality", threshold]) == 0
        (face,) = json.loads(out.read_text())["faces"]
        assert bool(face["attributes"]) is estimated and face["inferred"] is estimated
        assert 0.5 < face["quality"]["score"] < 0.99
    assert main([*argv, "--min-quality", "2"]) == 2


def test_a_stream_without_schedule_skips_every_low_quality_frame(
    picky: Analyzer, astronaut_bgr: np.ndarray, blurred: np.ndarray
) -> None:
    from facesdk.scheduling import ScheduleConfig

    backend = counted(picky)
    faces = stream_one_sharp_frame(picky, astronaut_bgr, blurred, schedule=ScheduleConfig(enabled=False))
    assert backend.faces == 1 and picky.stats()[SKIPPED_LOW_QUALITY]["count"] == 3.0
    assert [f.inferred for f in faces] == [False, True, False, False]
    assert faces[3].attributes == faces[1].attributes  # the track's last estimate is kept


def test_many_streams_skip_low_quality_faces_and_measure_every_face(
    picky: Analyzer, astronaut_bgr: np.ndarray, blurred: np.ndarray
) -> None:
    from facesdk.scheduling import ScheduleConfig

    sources = {"sharp": [astronaut_bgr] * 3, "soft": [blurred] * 3}
    backend = counted(picky)
    results = list(picky.streams(sources, schedule=ScheduleConfig(enabled=False)))
    by_source = {name: [r.faces[0] for r in results if r.source == name] for name in sources}
    assert backend.faces == 3  # only the sharp source's faces reached the backbone
    assert all(f.inferred and f.estimated for f in by_source["sharp"])
    assert all(not f.estimated and not f.inferred for f in by_source["soft"])
    assert all(f.quality is not None for r in results for f in r.faces)


def test_a_stream_measures_each_face_once_per_frame(
    tiny_export: Path, yunet_path: Path, astronaut_bgr: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facesdk.faces import quality
    from facesdk.scheduling import ScheduleConfig

    calls = []
    measure = quality.face_quality
    monkeypatch.setattr(quality, "face_quality", lambda *a, **k: calls.append(1) or measure(*a, **k))
    with Analyzer(tiny_export, backend="onnxruntime", detector=yunet_path) as a:
        faces = [r.faces[0] for r in a.stream([astronaut_bgr] * 4, schedule=ScheduleConfig(enabled=False))]
    assert all(f.inferred and f.quality is not None for f in faces)
    assert len(calls) == 4  # scheduling measured it; the backbone run reused that measurement
