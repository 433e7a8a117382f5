"""Audience records: per-window and per-content aggregates, and the optional per-visit record.

Every record is a plain JSON-able mapping with a ``"kind"``; times are ISO 8601 in UTC. No
record holds an image, a crop, a landmark, a box or an embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = ["ATTENTION_BINS", "SCHEMA_VERSION", "Aggregate", "attention_bin", "iso_utc"]

SCHEMA_VERSION = 1
"""Version of the records' layout (``"schema_version"`` in each record)."""

ATTENTION_BINS: tuple[tuple[str, float], ...] = (
    ("0", 0.0),
    ("0-1", 1.0),
    ("1-2", 2.0),
    ("2-5", 5.0),
    ("5-10", 10.0),
    ("10+", float("inf")),
)
"""Histogram bins of attention seconds: ``(name, upper bound)``; ``"0"`` holds people who never looked."""


def attention_bin(seconds: float) -> str:
    """The :data:`ATTENTION_BINS` name for an attention time."""
    if seconds <= 0.0:
        return "0"
    return next(name for name, upper in ATTENTION_BINS[1:] if seconds < upper)


def iso_utc(timestamp: float) -> str:
    """Seconds since the epoch as ISO 8601 in UTC, millisecond precision (``2026-12-07T10:00:00.000+00:00``)."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Aggregate:
    """What one time window or one play of a content item saw, before k-anonymity.

    Attributes:
        kind: ``"window"`` or ``"content"``.
        source: The stream it came from (``FrameResult.source``).
        start: Start, seconds since the epoch.
        end: End (exclusive), seconds since the epoch.
        content: The content item (``None`` for windows).
        partial: The stream stopped inside the period (its last frame is before ``end``).
        passers_by: People in view at any time in the period.
        viewers: Passers-by who looked in the period and whose attention, from their arrival to
            the period's end, reached the viewer threshold.
        dwell_mean_s: Mean time in view within the period, over passers-by.
        dwell_median_s: Median of the same.
        attention_mean_s: Mean time looking within the period, over viewers.
        attention_median_s: Median of the same.
        attention_histogram: Passers-by per bin of their attention within the period.
        viewers_by_age_gender: Viewers per age group and gender (each visit's averaged posteriors'
            top labels; ``"unknown"`` before any estimate).
        emotion_shares: Share of the looking time with each top emotion, over all looking people.
        emotion_people: People whose looking time has an emotion estimate.
    """

    kind: str
    source: str | None
    start: float
    end: float
    content: str | None
    partial: bool
    passers_by: int
    viewers: int
    dwell_mean_s: float | None
    dwell_median_s: float | None
    attention_mean_s: float | None
    attention_median_s: float | None
    attention_histogram: Mapping[str, int]
    viewers_by_age_gender: Mapping[str, Mapping[str, int]]
    emotion_shares: Mapping[str, float]
    emotion_people: int

    def to_json(self) -> dict[str, Any]:
        """The record as published, before :func:`facesdk.audience.privacy.suppress`."""
        return {
            "kind": self.kind,
            "schema_version": SCHEMA_VERSION,
            "source": self.source,
            "start": iso_utc(self.start),
            "end": iso_utc(self.end),
            "content": self.content,
            "partial": self.partial,
            "passers_by": self.passers_by,
            "viewers": self.viewers,
            "dwell_s": {"mean": self.dwell_mean_s, "median": self.dwell_median_s},
            "attention_s": {"mean": self.attention_mean_s, "median": self.attention_median_s},
            "attention_histogram": dict(self.attention_histogram),
            "viewers_by_age_gender": {age: dict(g) for age, g in self.viewers_by_age_gender.items()},
            "emotion_shares": dict(self.emotion_shares),
            "emotion_people": self.emotion_people,
        }
