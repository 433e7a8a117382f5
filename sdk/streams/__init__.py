"""Streams: frame sources, tracking, scheduling, the classifier worker and the stream runner.

The package holds everything a stream needs, one module a part:

- :mod:`~facesdk.streams.sources`: cameras, video files, URLs and iterables as frame sources;
- :mod:`~facesdk.streams.tracking`: the IoU tracker and its tracks' estimates;
- :mod:`~facesdk.streams.scheduling`: which tracked faces go to the backbone, and when;
- :mod:`~facesdk.streams.classifier`: the backbone worker, off the frame path;
- :mod:`~facesdk.streams.runner`: one runner for one source or many (``Analyzer.stream`` and
  ``Analyzer.streams`` drive it).

``from facesdk.streams import FrameStream`` and the other names below are the public API.
"""

from __future__ import annotations

from .classifier import Classifier, Request
from .runner import Clock, MultiStream, StreamRun, source_labels
from .scheduling import FramePlan, ScheduleConfig, StreamScheduler
from .sources import (
    DEFAULT_OPEN_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    Capture,
    FrameStream,
    StreamFrame,
    is_live_source,
    open_capture,
)
from .tracking import IoUTracker, Track, TrackerConfig

__all__ = [
    "Capture",
    "Classifier",
    "Clock",
    "DEFAULT_OPEN_TIMEOUT_S",
    "DEFAULT_READ_TIMEOUT_S",
    "FramePlan",
    "FrameStream",
    "IoUTracker",
    "MultiStream",
    "Request",
    "ScheduleConfig",
    "StreamFrame",
    "StreamRun",
    "StreamScheduler",
    "Track",
    "TrackerConfig",
    "is_live_source",
    "open_capture",
    "source_labels",
]
