"""Kept for existing imports: the tracker lives in :mod:`facesdk.streams.tracking`."""

from __future__ import annotations

from .streams.tracking import IoUTracker, Track, TrackerConfig, iou, iou_matrix, smooth

__all__ = ["IoUTracker", "Track", "TrackerConfig", "iou", "iou_matrix", "smooth"]
