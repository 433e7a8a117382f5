"""Audience measurement: visits, attention and privacy-safe aggregates from stream results.

``Audience`` consumes :class:`facesdk.results.FrameResult` objects (one ``update`` per frame),
keeps one visit per person in view, and publishes per-window and per-content aggregates,
k-anonymised by :func:`suppress`, to its sinks. See docs/audience.md.
"""

from __future__ import annotations

from ..faces.pose import HeadPose, head_pose
from .audience import Audience, AudienceConfig
from .looking import LookingConfig, is_looking
from .periods import read_schedule
from .privacy import DEFAULT_K, suppress
from .records import Aggregate
from .sinks import Sink
from .visits import Visit

__all__ = [
    "DEFAULT_K",
    "Aggregate",
    "Audience",
    "AudienceConfig",
    "HeadPose",
    "LookingConfig",
    "Sink",
    "Visit",
    "head_pose",
    "is_looking",
    "read_schedule",
    "suppress",
]
