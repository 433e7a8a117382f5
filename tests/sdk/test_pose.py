"""Head pose from five landmarks: accuracy on projected landmarks, signs on a real photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facesdk.faces.pose import HeadPose, head_pose, project_landmarks
from facesdk.results import FaceResult


def test_noisy_projected_landmarks_give_yaw_and_pitch_within_five_degrees() -> None:
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(500):
        truth = HeadPose(rng.uniform(-45, 45), rng.uniform(-30, 30), rng.uniform(-15, 15))
        points = project_landmarks(truth, center=(320.0, 240.0), inter_ocular=60.0)
        points += rng.normal(0.0, 0.02 * 60.0, points.shape)  # 2% of the inter-ocular distance
        found = head_pose(points)
        errors.append((abs(found.yaw - truth.yaw), abs(found.pitch - truth.pitch)))
    yaw_mae, pitch_mae = np.mean(errors, axis=0)
    assert yaw_mae <= 5.0 and pitch_mae <= 5.0, (yaw_mae, pitch_mae)


@pytest.mark.parametrize(("yaw", "pitch", "roll"), [(30, 0, 0), (0, 20, 0), (0, 0, 25), (-40, -25, 10)])
def test_exact_landmarks_give_the_pose_back_with_its_signs(yaw: float, pitch: float, roll: float) -> None:
    points = project_landmarks(HeadPose(yaw, pitch, roll), center=(100.0, 100.0), inter_ocular=50.0)
    found = head_pose(points)
    assert (found.yaw, found.pitch, found.roll) == pytest.approx((yaw, pitch, roll), abs=1e-3)
    frontal = project_landmarks(HeadPose(0, 0, 0), center=(100.0, 100.0), inter_ocular=50.0)
    nose_shift = points[2] - frontal[2]
    if yaw > 0 and pitch == 0:  # turned to their left: the nose moves to the image's right
        assert nose_shift[0] > 0
    if pitch > 0 and yaw == 0:  # looking up: the nose moves up (smaller y)
        assert nose_shift[1] < 0


def test_without_five_landmarks_there_is_no_pose() -> None:
    assert head_pose([(0.0, 0.0)] * 3) is None
    assert FaceResult((0, 0, 10, 10), 0.9, (), {}).pose is None


def test_face_result_carries_its_pose_in_json_and_old_json_loads() -> None:
    marks = tuple(map(tuple, project_landmarks(HeadPose(20, -10, 5), (50.0, 50.0), 40.0).tolist()))
    face = FaceResult((0, 0, 100, 100), 0.9, marks, {})
    data = face.to_json()
    assert data["pose"] == pytest.approx({"yaw": 20.0, "pitch": -10.0, "roll": 5.0}, abs=1e-3)
    old = {k: v for k, v in data.items() if k != "pose"}
    assert FaceResult.from_json(old) == face == FaceResult.from_json(data)


def _pose_of(image: np.ndarray, yunet: object) -> HeadPose:
    from facesdk.faces.detector import DetectorConfig, FaceDetector

    faces = FaceDetector(yunet, DetectorConfig()).detect(image)  # type: ignore[arg-type]
    assert len(faces) == 1
    pose = head_pose(faces[0].landmarks)
    assert pose is not None
    return pose


def test_the_astronaut_is_frontal_and_her_mirror_and_rotation_change_yaw_and_roll(
    astronaut_bgr, yunet_path
) -> None:
    from facesdk.faces.detector import DetectorConfig, FaceDetector

    detector = FaceDetector(yunet_path, DetectorConfig())
    (face,) = detector.detect(astronaut_bgr)
    upright = head_pose(face.landmarks)
    assert abs(upright.yaw) < 10 and abs(upright.pitch) < 15 and abs(upright.roll) < 10, upright
    h, w = astronaut_bgr.shape[:2]
    marks = np.array(face.landmarks)
    # the same landmarks mirrored (x -> w - 1 - x, the person's right and left swap): yaw and roll flip
    mirrored = head_pose(np.column_stack([w - 1 - marks[:, 0], marks[:, 1]])[[1, 0, 2, 4, 3]])
    assert (mirrored.yaw, mirrored.pitch, mirrored.roll) == pytest.approx(
        (-upright.yaw, upright.pitch, -upright.roll), abs=1e-6
    )
    assert abs(_pose_of(np.ascontiguousarray(astronaut_bgr[:, ::-1]), yunet_path).yaw) < 10  # re-detected
    for angle in (20, -20):  # cv2 turns counter-clockwise for a positive angle: roll > 0
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        turned = head_pose(marks @ turn[:, :2].T + turn[:, 2])
        assert turned.roll - upright.roll == pytest.approx(angle, abs=1e-6)
        assert (turned.yaw, turned.pitch) == pytest.approx((upright.yaw, upright.pitch), abs=1e-6)
        rotated = cv2.warpAffine(astronaut_bgr, turn, (w, h), borderMode=cv2.BORDER_REFLECT)
        # re-detected, YuNet tilts its landmarks by a few degrees only: the sign must still be right
        assert np.sign(_pose_of(rotated, yunet_path).roll - upright.roll) == np.sign(angle)
