"""Frame validation: turn what callers pass into the H x W x 3 uint8 BGR image the SDK works on.

Accepted and converted: uint8 BGR (as is), grayscale H x W and H x W x 1 (to 3 channels),
BGRA H x W x 4 (alpha dropped), float frames in [0, 1] or [0, 255] (scaled and rounded),
uint16 frames (scaled by 1/257). Everything else is refused with :class:`InvalidFrameError`
saying what was expected.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .errors import InvalidFrameError

__all__ = ["to_bgr_uint8", "EXPECTED_FRAME", "MIN_FRAME_SIDE"]

EXPECTED_FRAME = (
    "a numpy array H x W x 3 uint8 in BGR order (grayscale, BGRA, float and uint16 are converted)"
)
MIN_FRAME_SIDE = 2


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return (frame.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if frame.dtype.kind == "f":
        if not np.all(np.isfinite(frame)):
            raise InvalidFrameError(f"frame holds NaN or infinite values; expected {EXPECTED_FRAME}")
        lo, hi = float(frame.min()), float(frame.max())
        if lo < 0.0 or hi > 255.0:
            raise InvalidFrameError(
                f"float frame values span [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255], or {EXPECTED_FRAME}"
            )
        scale = 255.0 if hi <= 1.0 else 1.0
        return np.clip(frame.astype(np.float32) * scale + 0.5, 0, 255).astype(np.uint8)
    raise InvalidFrameError(f"frame has dtype {frame.dtype}; expected {EXPECTED_FRAME}")


def to_bgr_uint8(frame: Any) -> np.ndarray:
    """Validate a frame and convert it to a contiguous H x W x 3 uint8 BGR array.

    Args:
        frame: The image: a numpy array as OpenCV returns it, or grayscale, BGRA, float
            ([0, 1] or [0, 255]) or uint16 variants of it.

    Returns:
        The frame itself when it already is uint8 BGR and contiguous, else a converted copy.

    Raises:
        InvalidFrameError: ``None``, not an array, empty, wrong rank or channel count,
            unsupported dtype or out-of-range float values.
    """
    if frame is None:
        raise InvalidFrameError(f"frame is None (a failed read or decode?); expected {EXPECTED_FRAME}")
    if not isinstance(frame, np.ndarray):
        raise InvalidFrameError(f"frame is a {type(frame).__name__}; expected {EXPECTED_FRAME}")
    if frame.size == 0 or frame.ndim < 2 or min(frame.shape[:2]) < MIN_FRAME_SIDE:
        raise InvalidFrameError(f"frame has shape {frame.shape}; expected {EXPECTED_FRAME}, at least 2 x 2")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise InvalidFrameError(f"frame has shape {frame.shape}; expected {EXPECTED_FRAME}")
    frame = _to_uint8(frame)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(frame)
