"""Face detection with YuNet through ``cv2.FaceDetectorYN``.

Large frames are downscaled so that their longer side is at most ``max_side`` before
detection; boxes and landmarks are scaled back to frame pixels.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..errors import ConfigError, DetectorNotFoundError
from ..frames import to_bgr_uint8
from ..results import Detection
from .model_store import find_detector_model

__all__ = ["STREAM_MAX_SIDE", "DetectorConfig", "FaceDetector", "parse_yunet_output", "stream_config"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Detector settings.

    Attributes:
        score_threshold: Minimum face score (0..1).
        nms_threshold: IoU above which overlapping boxes are suppressed.
        top_k: Boxes kept before NMS.
        min_face_size: Faces whose shorter box side (frame pixels) is smaller are dropped.
        max_side: Frames with a longer side above this are downscaled for detection.
    """

    score_threshold: float = 0.7
    nms_threshold: float = 0.3
    top_k: int = 5000
    min_face_size: float = 16.0
    max_side: int = 1280

    def __post_init__(self) -> None:
        if not 0.0 < self.score_threshold < 1.0:
            raise ConfigError(f"score_threshold must be in (0, 1), got {self.score_threshold}")
        if not 0.0 < self.nms_threshold <= 1.0:
            raise ConfigError(f"nms_threshold must be in (0, 1], got {self.nms_threshold}")
        if self.top_k < 1 or self.min_face_size < 0 or self.max_side < 32:
            raise ConfigError(
                f"need top_k >= 1, min_face_size >= 0 and max_side >= 32; got {self.top_k}, "
                f"{self.min_face_size}, {self.max_side}"
            )


STREAM_MAX_SIDE = 640
"""Longest side streams detect at (``Analyzer(stream_detector_config=...)`` changes it).

Chosen by ``benchmarks/stream.py`` (docs/benchmarks/stream.md): on a 1280 x 720 frame with six
faces, YuNet finds the same six faces at 640 as at 1280 in a quarter of the pixels (6.2 vs 25.3 ms
on a quiet 2-core machine); the smallest face it still finds at 640 is about 22 x 27 px (frame
pixels), against 16 x 20 at 1280 (where ``min_face_size`` cuts), 18 x 23 at 960 and 38 x 48 at 320.
Single-image analysis keeps ``DetectorConfig.max_side`` (1280)."""


def stream_config(config: DetectorConfig | None) -> DetectorConfig:
    """The stream detector settings derived from ``config``: the same, with ``max_side`` at most 640."""
    config = config or DetectorConfig()
    return replace(config, max_side=min(config.max_side, STREAM_MAX_SIDE))


def parse_yunet_output(
    faces: np.ndarray | None, scale: float = 1.0, min_face_size: float = 0.0
) -> list[Detection]:
    """Turn YuNet's N x 15 output rows into :class:`Detection` objects in frame pixels.

    Args:
        faces: Rows ``x, y, w, h, 5 x (lx, ly), score`` or ``None`` when nothing was found.
        scale: Factor from detection-image pixels back to frame pixels.
        min_face_size: Drop faces whose shorter side (after scaling) is below this.
    """
    if faces is None or len(faces) == 0:
        return []
    out = []
    for row in np.asarray(faces, dtype=np.float64):
        box = tuple(float(v) * scale for v in row[:4])
        if min(box[2], box[3]) < min_face_size:
            continue
        marks = tuple((float(row[4 + 2 * i]) * scale, float(row[5 + 2 * i]) * scale) for i in range(5))
        out.append(Detection(box=box, score=float(row[14]), landmarks=marks))  # type: ignore[arg-type]
    out.sort(key=lambda d: -d.score)
    return out


class FaceDetector:
    """YuNet face detector. Thread-safe: calls on one instance are serialised by a lock.

    Args:
        model: Path of the YuNet ONNX file, or ``None`` for the documented lookup
            (``$FACESDK_HOME/models``, then the user cache, then the copy inside the package).
        config: Thresholds and sizes.
    """

    def __init__(
        self, model: str | os.PathLike[str] | None = None, config: DetectorConfig | None = None
    ) -> None:
        self.config = config or DetectorConfig()
        self.model_path = find_detector_model(model)
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorNotFoundError(
                f"this OpenCV ({cv2.__version__}) has no FaceDetectorYN; install opencv-python-headless >= 4.8"
            )
        cfg = self.config
        # OpenCV 5's new DNN engine logs a 'setPreferableTarget ... not supported' warning while
        # creating the detector (the default CPU target); it is harmless, so hide it for this call only.
        # Builds without cv2.utils.logging (e.g. the serving environment's OpenCV 4) print nothing to hide.
        cv_logging = getattr(getattr(cv2, "utils", None), "logging", None)
        log_level = cv_logging.getLogLevel() if cv_logging is not None else None
        if cv_logging is not None:
            cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)
        try:
            self._yn = cv2.FaceDetectorYN.create(
                str(self.model_path), "", (320, 320), cfg.score_threshold, cfg.nms_threshold, cfg.top_k
            )
        except cv2.error as exc:
            raise DetectorNotFoundError(
                f"OpenCV could not load the face detector {self.model_path}: {exc}. The file may be corrupt; "
                "run 'facesdk models fetch --force'"
            ) from exc
        finally:
            if cv_logging is not None:
                cv_logging.setLogLevel(log_level)
        self._size: tuple[int, int] | None = None
        self._lock = threading.Lock()
        logger.info("face detector: %s", self.model_path)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Detect faces in a frame; returns detections sorted by score, in frame pixels."""
        frame = to_bgr_uint8(frame)
        h, w = frame.shape[:2]
        scale = 1.0
        image = frame
        if max(h, w) > self.config.max_side:
            factor = self.config.max_side / max(h, w)
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            image = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            scale = w / size[0]
        ih, iw = image.shape[:2]
        with self._lock:
            if self._size != (iw, ih):
                self._yn.setInputSize((iw, ih))
                self._size = (iw, ih)
            _, faces = self._yn.detect(image)
        return parse_yunet_output(faces, scale, self.config.min_face_size)

    __call__ = detect
