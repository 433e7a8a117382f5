"""Face detection (YuNet), detector model lookup and face crops (alignment).

Quality, head pose and the per-face analysis (:mod:`.analysis`: crops -> one batched inference ->
results) are modules of this package, imported where they are used.
"""

from __future__ import annotations

from .align import (
    ARCFACE_TEMPLATE_112,
    align_template,
    crop_face,
    crop_faces,
    crop_transform,
    umeyama_similarity,
)
from .detector import DetectorConfig, FaceDetector, parse_yunet_output
from .model_store import (
    DETECTOR_FILENAME,
    DETECTOR_SHA256,
    DETECTOR_URL,
    cache_dir,
    fetch_detector_model,
    find_detector_model,
)

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "DETECTOR_FILENAME",
    "DETECTOR_SHA256",
    "DETECTOR_URL",
    "DetectorConfig",
    "FaceDetector",
    "align_template",
    "cache_dir",
    "crop_face",
    "crop_faces",
    "crop_transform",
    "fetch_detector_model",
    "find_detector_model",
    "parse_yunet_output",
    "umeyama_similarity",
]
