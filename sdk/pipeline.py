"""Kept for existing imports: the per-face analysis functions live in :mod:`facesdk.faces.analysis`."""

from __future__ import annotations

from .faces.analysis import (
    SKIPPED_LOW_QUALITY,
    STAGES,
    PreparedFaces,
    analyze_faces,
    check_min_quality,
    finish_faces,
    infer_crops,
    postprocess,
    prepare_faces,
    select_for_inference,
    softmax,
)

__all__ = [
    "SKIPPED_LOW_QUALITY",
    "STAGES",
    "analyze_faces",
    "check_min_quality",
    "finish_faces",
    "infer_crops",
    "postprocess",
    "prepare_faces",
    "PreparedFaces",
    "select_for_inference",
    "softmax",
]
