"""Kept for existing imports: the scheduling API lives in :mod:`facesdk.streams.scheduling`."""

from __future__ import annotations

from .streams.scheduling import FramePlan, ScheduleConfig, StreamScheduler

__all__ = ["FramePlan", "ScheduleConfig", "StreamScheduler"]
