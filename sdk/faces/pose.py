"""Head pose (yaw, pitch, roll) from the five detector landmarks, with no camera intrinsics.

The five points (right eye, left eye, nose tip, right and left mouth corners, as seen from the
person) are fitted by a generic 3D five-point face, :data:`FACE_MODEL_3D`, under a
*weak-perspective* camera: ``p = s * (R @ X)[:2] + t``. Intrinsics are not known for an
arbitrary camera and a face is small against its distance, so a scaled orthographic view
loses little and needs none. The fit starts from the closed-form affine solution (least
squares over the 2 x 3 projection, projected onto the nearest scaled rotation) and refines
rotation, scale and translation by a few Gauss-Newton steps on the reprojection error.

Sign convention (angles in degrees, a person facing the camera is 0, 0, 0):

* ``yaw > 0``: the person turns to their left (the nose moves to the image's right).
* ``pitch > 0``: the person looks up (the nose moves up in the image).
* ``roll > 0``: the head tilts towards the person's right shoulder, which turns the face
  counter-clockwise in the displayed image (as ``cv2.getRotationMatrix2D`` with a positive angle).

The rotation is ``R = Rz(-roll) @ Ry(-yaw) @ Rx(-pitch)`` in camera axes (x right, y down, z
away from the camera). Accuracy on landmarks projected from the model with Gaussian noise of 2%
of the inter-ocular distance: mean absolute error of yaw and pitch about 2 degrees within
+-45 yaw and +-30 pitch (``tests/sdk/test_pose.py``). On real faces the generic model's
proportions add a bias of a few degrees, mostly in pitch, and the detector's landmarks add their
own errors: YuNet's landmarks on the astronaut rotated by 20 degrees tilt the eye line by only
about 2-6 degrees, so roll from re-detected rotated faces is much smaller than the rotation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["FACE_MODEL_3D", "HeadPose", "head_pose", "pose_rotation", "project_landmarks"]

FACE_MODEL_3D = np.array(
    [
        [-31.5, 0.0, 0.0],  # right eye (the person's right: image left when facing the camera)
        [31.5, 0.0, 0.0],  # left eye
        [0.0, 32.0, -24.0],  # nose tip, in front of the eyes (towards the camera)
        [-26.0, 60.0, -4.0],  # right mouth corner
        [26.0, 60.0, -4.0],  # left mouth corner
    ],
    dtype=np.float64,
)
"""A generic adult face in millimetres, camera axes for a frontal face (x right in the image, y
down, z away from the camera): eyes 63 mm apart, the nose tip 32 mm below and 24 mm in front of
them, the mouth corners 52 mm apart and 60 mm below the eyes. The vertical proportions are those
of YuNet's landmarks on a frontal face (the astronaut: nose 0.47-0.50, mouth 0.87-0.93 eye
distances below the eyes); the ArcFace template, from another landmark detector, puts the mouth
lower (1.16) and would read a frontal YuNet face as looking down by about 30 degrees."""

_CENTRED = FACE_MODEL_3D - FACE_MODEL_3D.mean(axis=0)
_PINV = np.linalg.pinv(_CENTRED)  # the affine fit's least squares is one product with this


@dataclass(frozen=True, slots=True)
class HeadPose:
    """Yaw, pitch and roll in degrees (signs in the module docstring)."""

    yaw: float
    pitch: float
    roll: float

    def to_json(self) -> dict[str, float]:
        return {"yaw": self.yaw, "pitch": self.pitch, "roll": self.roll}


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def pose_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The 3 x 3 rotation of a head pose given in degrees (camera axes)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    return _rz(-r) @ _ry(-y) @ _rx(-p)


def _angles(rotation: np.ndarray) -> HeadPose:
    # rotation = Rz(a) Ry(b) Rx(c) with a = -roll, b = -yaw, c = -pitch
    b = -math.asin(max(-1.0, min(1.0, float(rotation[2, 0]))))
    c = math.atan2(float(rotation[2, 1]), float(rotation[2, 2]))
    a = math.atan2(float(rotation[1, 0]), float(rotation[0, 0]))
    return HeadPose(yaw=-math.degrees(b), pitch=-math.degrees(c), roll=-math.degrees(a))


def project_landmarks(
    pose: HeadPose, center: tuple[float, float] = (0.0, 0.0), inter_ocular: float = 63.0
) -> np.ndarray:
    """The five image points of :data:`FACE_MODEL_3D` turned by ``pose`` (orthographic view).

    ``center`` is where the model's centroid lands and ``inter_ocular`` the eye distance of the
    frontal face in pixels. For tests and scripted scenarios.
    """
    rotated = _CENTRED @ pose_rotation(pose.yaw, pose.pitch, pose.roll).T
    scale = inter_ocular / (FACE_MODEL_3D[1, 0] - FACE_MODEL_3D[0, 0])
    return rotated[:, :2] * scale + np.asarray(center, dtype=np.float64)


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _exp(w: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(w))
    if theta < 1e-12:
        return np.eye(3) + _skew(w)
    k = _skew(w / theta)
    return np.eye(3) + math.sin(theta) * k + (1.0 - math.cos(theta)) * (k @ k)


def head_pose(landmarks: Sequence[Sequence[float]], iterations: int = 3) -> HeadPose | None:
    """Yaw, pitch and roll of a face from its five landmarks, or ``None`` without five points.

    Args:
        landmarks: Five (x, y) image points in the detector's order.
        iterations: Gauss-Newton refinements after the closed-form start (0 keeps the start).
    """
    if len(landmarks) != 5:
        return None
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    centred = points - points.sum(axis=0) * 0.2  # the mean of five points (cheaper than .mean)
    # closed form: the affine projection M (2 x 3) in least squares, then the nearest scaled rotation
    affine = (_PINV @ centred).T
    u, sv, vt = np.linalg.svd(affine, full_matrices=False)
    rows = u @ vt
    scale = float(sv.mean())
    if scale <= 1e-12:
        return None
    (a0, a1, a2), (b0, b1, b2) = rows.tolist()
    # the third row is the cross product of the two orthonormal rows: a proper rotation (det +1)
    rotation = np.array(
        [[a0, a1, a2], [b0, b1, b2], [a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0]]
    )
    shift = np.zeros(2)
    jac = np.zeros((5, 2, 6))
    jac[:, 0, 4] = jac[:, 1, 5] = 1.0
    for _ in range(iterations):
        rotated = _CENTRED @ rotation.T
        residual = (scale * rotated[:, :2] + shift - centred).ravel()
        # d(R X)/dw for a left perturbation R <- exp(w) R is -[R X]x; its x and y rows:
        jac[:, 0, 1], jac[:, 0, 2] = scale * rotated[:, 2], -scale * rotated[:, 1]
        jac[:, 1, 0], jac[:, 1, 2] = -scale * rotated[:, 2], scale * rotated[:, 0]
        jac[:, :, 3] = rotated[:, :2]
        flat = jac.reshape(10, 6)
        step = np.linalg.solve(flat.T @ flat, -flat.T @ residual)
        rotation = _exp(step[:3]) @ rotation
        scale += float(step[3])
        shift += step[4:]
        if float(np.abs(step[:3]).max()) < 1e-6:
            break
    return _angles(rotation)
