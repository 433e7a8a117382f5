"""Face crops: five-point alignment, square box crops and whole-image resizes.

These functions are pure and deterministic: the Analyzer, the INT8 calibration collector
and dataset preparation all call them, so train and serve crops are the same pixels.

* ``align5``: a similarity transform (rotation, uniform scale, translation) maps the five
  detector landmarks onto the standard ArcFace 112 x 112 template, normalised to [0, 1] and
  shrunk about the centre by ``1 + margin`` so that more context (hair, jaw) is kept. The
  transform is the closed-form least-squares solution of Umeyama (1991), computed with numpy,
  not ``cv2.estimateAffinePartial2D`` (which uses RANSAC and may vary between runs).
* ``box``: a square centred on the box, side ``max(w, h) * (1 + margin)``.
* ``full``: the whole image resized (for inputs that already are face crops).

The crop is warped straight to ``Preprocess.input_size`` with the spec's interpolation
(``area`` is not defined for warps; OpenCV applies it as bilinear there). Pixels outside the
frame (faces cut by the border) are filled with a constant black border (value 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..errors import ConfigError
from ..frames import to_bgr_uint8
from ..preprocess import Preprocess
from ..results import Detection

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "BORDER_VALUE",
    "align_template",
    "crop_face",
    "crop_faces",
    "crop_transform",
    "umeyama_similarity",
]

ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
"""The standard ArcFace five-point template for 112 x 112 crops (eyes, nose, mouth corners)."""

BORDER_VALUE = (0, 0, 0)
"""Fill for crop pixels that fall outside the frame."""


def align_template(input_size: tuple[int, int], margin: float) -> np.ndarray:
    """The five target points in output pixels for an ``(height, width)`` crop and a margin."""
    unit = ARCFACE_TEMPLATE_112 / 112.0
    unit = 0.5 + (unit - 0.5) / (1.0 + margin)
    height, width = input_size
    return unit * np.array([width, height], dtype=np.float64)


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` (Umeyama 1991).

    Args:
        src: N x 2 source points.
        dst: N x 2 destination points.

    Returns:
        The 2 x 3 float64 matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    var = (src_c**2).sum() / len(src)
    scale = float((s * d).sum() / var) if var > 0 else 1.0
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def crop_transform(detection: Detection, spec: Preprocess) -> np.ndarray:
    """The 2 x 3 matrix that maps frame pixels to crop pixels for ``align5`` and ``box``."""
    policy = spec.crop
    if policy.kind == "align5":
        marks = np.asarray(detection.landmarks, dtype=np.float64)
        if marks.shape != (5, 2):
            raise ConfigError(
                f"crop policy 'align5' needs 5 landmarks, the detection has {len(detection.landmarks)}; "
                "use CropPolicy(kind='box') for boxes without landmarks"
            )
        return umeyama_similarity(marks, align_template(spec.input_size, policy.margin))
    if policy.kind == "box":
        x, y, w, h = detection.box
        side = max(w, h) * (1.0 + policy.margin)
        if side <= 0:
            raise ConfigError(f"detection box {detection.box} has no area")
        x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2
        sx, sy = spec.width / side, spec.height / side
        return np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]], dtype=np.float64)
    raise ConfigError(f"crop policy {policy.kind!r} has no per-face transform")


def crop_face(frame_bgr: np.ndarray, detection: Detection | None, spec: Preprocess) -> np.ndarray:
    """Cut one face out of a frame as the model sees it.

    Args:
        frame_bgr: The frame (uint8 BGR; other layouts are converted by :func:`to_bgr_uint8`).
        detection: The face; ignored (may be ``None``) for crop policy ``full``.
        spec: The model's preprocessing spec (input size, interpolation, crop policy).

    Returns:
        An ``(H, W, 3)`` uint8 BGR crop with ``(H, W) == spec.input_size``.
    """
    frame = to_bgr_uint8(frame_bgr)
    size = (spec.width, spec.height)
    if spec.crop.kind == "full":
        return cv2.resize(frame, size, interpolation=spec.cv2_interpolation)
    if detection is None:
        raise ConfigError(f"crop policy {spec.crop.kind!r} needs a detection")
    return cv2.warpAffine(
        frame,
        crop_transform(detection, spec),
        size,
        flags=spec.cv2_interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BORDER_VALUE,
    )


def crop_faces(frame_bgr: np.ndarray, detections: Sequence[Detection], spec: Preprocess) -> list[np.ndarray]:
    """Crop every detection of one frame (see :func:`crop_face`); the frame is converted once."""
    frame = to_bgr_uint8(frame_bgr)
    return [crop_face(frame, det, spec) for det in detections]
