"""Face quality: how well a frame shows a face, from size, sharpness, pose and detector score.

Each component is in [0, 1] (1 is best) and the combined score is their geometric mean, so a
face that fails on any one count (tiny, blurred, turned away, doubtful detection) scores low:

* ``size``: the box's geometric mean side ``s = sqrt(w * h)`` in frame pixels on a log scale,
  0 at :data:`SIZE_MIN_PX` (16 px) and 1 from :data:`SIZE_FULL_PX` (112 px) up.
* ``sharpness``: the variance ``v`` of the Laplacian of a fixed 64 x 64 grayscale aligned crop
  (the ArcFace five-point template of :mod:`facesdk.faces.align` with no margin, so it does
  not depend on the model's input size; pixels beyond the frame edge repeat the edge, so a
  face cut by the border gains no false edges), normalised as ``v / (v + SHARPNESS_HALF)``; a crop whose Laplacian
  variance is :data:`SHARPNESS_HALF` scores 0.5. A face upscaled from few pixels is blurred
  too, so small faces lose on both counts.
* ``pose``: ``cos(yaw) ** 2`` of a yaw estimated from the five landmarks (:func:`estimate_yaw`):
  the nose tip's offset from the midline of the eyes and mouth corners, measured along the eye
  line so that in-plane roll (which alignment removes) changes nothing. Frontal is 1, 45
  degrees 0.5, profile 0. Detections without five landmarks get ``pose = 1``.
* ``detector``: the detector's score, clipped to [0, 1].

The cost is one 64 x 64 warp and a Laplacian per face (tens of microseconds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from ..frames import to_bgr_uint8
from ..preprocess import CropPolicy, Preprocess
from ..results import Detection, Quality
from .align import align_template, crop_transform

__all__ = [
    "NOSE_DEPTH",
    "SHARPNESS_CROP_PX",
    "SHARPNESS_HALF",
    "SIZE_FULL_PX",
    "SIZE_MIN_PX",
    "assess_faces",
    "combine",
    "estimate_yaw",
    "face_quality",
    "pose_score",
    "sharpness_score",
    "similarity_transform",
    "size_score",
]

SIZE_MIN_PX = 16.0
"""Face size (``sqrt(w * h)`` of the box, pixels) that scores 0."""
SIZE_FULL_PX = 112.0
"""Face size from which the size component is 1."""
SHARPNESS_CROP_PX = 64
"""Side of the grayscale aligned crop the Laplacian is measured on."""
SHARPNESS_HALF = 100.0
"""Laplacian variance (on 0..255 gray levels) that scores 0.5."""
NOSE_DEPTH = 0.8
"""How far the nose tip stands in front of the eyes and mouth corners, in units of their
half-width: turns the nose's sideways offset into a yaw angle, ``tan(yaw) = offset / NOSE_DEPTH``."""

_TEMPLATE = align_template((SHARPNESS_CROP_PX, SHARPNESS_CROP_PX), 0.0).tolist()
_BOX_SPEC = Preprocess(
    input_size=(SHARPNESS_CROP_PX, SHARPNESS_CROP_PX), interpolation="bilinear", crop=CropPolicy("box", 0.0)
)


def size_score(box: Sequence[float]) -> float:
    """The size component of a box ``(x, y, w, h)`` (log scale, see the module docstring)."""
    side = math.sqrt(max(float(box[2]), 0.0) * max(float(box[3]), 0.0))
    if side <= SIZE_MIN_PX:
        return 0.0
    return min(1.0, math.log(side / SIZE_MIN_PX) / math.log(SIZE_FULL_PX / SIZE_MIN_PX))


def similarity_transform(src: Sequence[Sequence[float]], dst: Sequence[Sequence[float]]) -> np.ndarray:
    """Least-squares similarity (no reflection) mapping ``src`` points onto ``dst``, in closed form.

    The same matrix as :func:`facesdk.faces.umeyama_similarity` for point sets that need no
    reflection (every real face), computed with complex numbers in plain Python instead of an
    SVD: several times cheaper on five points, which matters for a score computed on every face
    of every frame.
    """
    zs = [complex(float(x), float(y)) for x, y in src]
    zd = [complex(float(x), float(y)) for x, y in dst]
    ms, md = sum(zs) / len(zs), sum(zd) / len(zd)
    cs = [z - ms for z in zs]
    denominator = sum(c.real * c.real + c.imag * c.imag for c in cs)
    a = sum(c.conjugate() * (z - md) for c, z in zip(cs, zd, strict=True)) / denominator if denominator else 1
    t = md - a * ms
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]], dtype=np.float64)


def sharpness_score(frame_bgr: np.ndarray, detection: Detection) -> float:
    """The sharpness component: normalised Laplacian variance of a 64 x 64 aligned gray crop."""
    size = (SHARPNESS_CROP_PX, SHARPNESS_CROP_PX)
    if len(detection.landmarks) == 5:
        matrix = similarity_transform(detection.landmarks, _TEMPLATE)
    else:
        matrix = crop_transform(detection, _BOX_SPEC)
    crop = cv2.warpAffine(frame_bgr, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    variance = float(cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_32F))[1][0, 0]) ** 2
    return variance / (variance + SHARPNESS_HALF)


def estimate_yaw(landmarks: Sequence[Sequence[float]]) -> float:
    """Unsigned yaw in degrees (0 frontal, 90 profile) from five landmarks, blind to in-plane roll.

    Landmarks in the detector's order (right eye, left eye, nose tip, right and left mouth
    corners) are projected on the eye line (right eye -> left eye). The nose tip's offset
    from the mean of the eye and mouth-corner midpoints, in units of the mean half-width of the
    eyes and the mouth, is ``NOSE_DEPTH * tan(yaw)`` for a head turned by ``yaw`` (orthographic
    view). Rotating all five points in the image plane leaves every projection unchanged.
    """
    (rx, ry), (lx, ly), (nx, ny), (mrx, mry), (mlx, mly) = ((float(x), float(y)) for x, y in landmarks)
    ax, ay = lx - rx, ly - ry
    norm = math.hypot(ax, ay)
    if norm <= 1e-9:
        return 90.0
    ax, ay = ax / norm, ay / norm
    eye_r, eye_l, nose = rx * ax + ry * ay, lx * ax + ly * ay, nx * ax + ny * ay
    mouth_r, mouth_l = mrx * ax + mry * ay, mlx * ax + mly * ay
    half_width = 0.25 * (abs(eye_l - eye_r) + abs(mouth_l - mouth_r))
    if half_width <= 1e-9:
        return 90.0
    midline = 0.25 * (eye_r + eye_l + mouth_r + mouth_l)
    offset = abs(nose - midline) / half_width
    return math.degrees(math.atan2(offset, NOSE_DEPTH))


def pose_score(landmarks: Sequence[Sequence[float]]) -> float:
    """The pose component, ``cos(yaw) ** 2`` of :func:`estimate_yaw`; 1 without five landmarks."""
    if len(landmarks) != 5:
        return 1.0
    return math.cos(math.radians(estimate_yaw(landmarks))) ** 2


def combine(size: float, sharpness: float, pose: float, detector: float) -> float:
    """The combined score: the geometric mean of the four components."""
    parts = (size, sharpness, pose, detector)
    if min(parts) <= 0.0:
        return 0.0
    return float(math.exp(sum(math.log(p) for p in parts) / len(parts)))


def face_quality(frame_bgr: np.ndarray, detection: Detection) -> Quality:
    """Every component and the combined score of one detected face in a uint8 BGR frame."""
    size = size_score(detection.box)
    sharpness = sharpness_score(frame_bgr, detection)
    pose = pose_score(detection.landmarks)
    detector = min(1.0, max(0.0, float(detection.score)))
    return Quality(
        score=combine(size, sharpness, pose, detector),
        size=size,
        sharpness=sharpness,
        pose=pose,
        detector=detector,
    )


def assess_faces(frame_bgr: np.ndarray, detections: Sequence[Detection]) -> tuple[Quality, ...]:
    """:func:`face_quality` of every detection of one frame (the frame is converted once)."""
    if not detections:
        return ()
    frame = to_bgr_uint8(frame_bgr)
    return tuple(face_quality(frame, det) for det in detections)
