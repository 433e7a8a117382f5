from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesdk import FaceResult, Prediction
from facesdk.errors import ConfigError
from facesdk.tracking import IoUTracker, TrackerConfig, iou


def _face(x: float, p_male: float = 0.9) -> FaceResult:
    gender = Prediction.from_probs(("male", "female"), [p_male, 1 - p_male])
    return FaceResult(box=(x, 10.0, 50.0, 50.0), score=0.9, landmarks=(), attributes={"gender": gender})


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_ids_are_stable_across_frames_and_new_faces_get_new_ids() -> None:
    tracker = IoUTracker(TrackerConfig(smoothing=0.0))
    first = tracker.update([_face(0), _face(200)])
    ids = [f.track_id for f in first]
    assert ids == [1, 2]
    for step in range(1, 6):
        moved = tracker.update([_face(200 + 3 * step), _face(3 * step)])  # order swapped, moving
        assert [f.track_id for f in moved] == [2, 1]
    assert [f.track_id for f in tracker.update([_face(500)])] == [3]


def test_lost_tracks_expire_after_max_age() -> None:
    tracker = IoUTracker(TrackerConfig(max_age=1, smoothing=0.0))
    tracker.update([_face(0)])
    tracker.update([])
    tracker.update([])
    assert tracker.update([_face(0)])[0].track_id == 2


def test_smoothing_blends_probabilities() -> None:
    tracker = IoUTracker(TrackerConfig(smoothing=0.6))  # 0.6 of the old estimate, 0.4 of the new one
    tracker.update([_face(0, p_male=1.0)])
    face = tracker.update([_face(1, p_male=0.0)])[0]
    assert face.gender.probs["male"] == pytest.approx(0.6)
    assert sum(face.gender.probs.values()) == pytest.approx(1.0)
    off = IoUTracker(TrackerConfig(smoothing=0.0))
    off.update([_face(0, p_male=1.0)])
    assert off.update([_face(1, p_male=0.0)])[0].gender.probs["male"] == 0.0


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="smoothing"):
        TrackerConfig(smoothing=1.0)


def test_stream_gives_stable_track_ids(analyzer: object, astronaut_bgr: np.ndarray, tmp_path: Path) -> None:
    frames = [np.roll(astronaut_bgr, 4 * i, axis=1) for i in range(4)]
    results = list(analyzer.stream(frames))  # type: ignore[attr-defined]
    assert [len(r.faces) for r in results] == [1, 1, 1, 1]
    assert {r.faces[0].track_id for r in results} == {1}
    assert analyzer.analyze(astronaut_bgr).faces[0].track_id is None  # type: ignore[attr-defined]
