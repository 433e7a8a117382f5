"""Time windows and content plays: what each visit contributed to each, split by time.

A visit's time is counted frame interval by frame interval (``[previous frame, this frame]``);
an interval that crosses a window's edge or a content switch is split at it, so a visit that
spans several windows or content items counts in each it overlaps with the share of its dwell
and attention that fell inside.
"""

from __future__ import annotations

import bisect
import csv
import math
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..errors import ConfigError
from .records import ATTENTION_BINS, Aggregate, attention_bin
from .visits import VisitState

__all__ = ["ContentTimeline", "Period", "read_schedule"]


@dataclass(eq=False, slots=True)
class _Share:
    visit: VisitState
    dwell_s: float = 0.0
    attention_s: float = 0.0
    emotion_s: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class Period:
    """One window or one play of a content item on one source, open until its end passes."""

    kind: str
    source: str | None
    start: float
    end: float | None
    content: str | None = None
    last_frame: float | None = None
    shares: dict[int, _Share] = field(default_factory=dict)

    def share(self, visit: VisitState) -> _Share:
        found = self.shares.get(visit.visit_id)
        if found is None:
            found = self.shares[visit.visit_id] = _Share(visit)
        return found

    def aggregate(self, min_attention_s: float, end: float) -> Aggregate:
        """The period's numbers; ``end`` is its end (or where the stream stopped)."""
        shares = list(self.shares.values())
        viewers = [s for s in shares if s.attention_s > 0.0 and s.visit.attention_s >= min_attention_s]
        dwell = [s.dwell_s for s in shares]
        attention = [s.attention_s for s in viewers]
        histogram = dict.fromkeys((name for name, _ in ATTENTION_BINS), 0)
        for s in shares:
            histogram[attention_bin(s.attention_s)] += 1
        cells: dict[str, dict[str, int]] = {}
        for s in viewers:
            age, gender = s.visit.top("age") or "unknown", s.visit.top("gender") or "unknown"
            cells.setdefault(age, {}).setdefault(gender, 0)
            cells[age][gender] += 1
        emotion: dict[str, float] = {}
        for s in shares:
            for label, seconds in s.emotion_s.items():
                emotion[label] = emotion.get(label, 0.0) + seconds
        total = sum(emotion.values())
        nominal_end = self.end if self.end is not None else end
        return Aggregate(
            kind=self.kind,
            source=self.source,
            start=self.start,
            end=nominal_end,
            content=self.content,
            partial=end < nominal_end,
            passers_by=len(shares),
            viewers=len(viewers),
            dwell_mean_s=statistics.fmean(dwell) if dwell else None,
            dwell_median_s=statistics.median(dwell) if dwell else None,
            attention_mean_s=statistics.fmean(attention) if attention else None,
            attention_median_s=statistics.median(attention) if attention else None,
            attention_histogram=histogram,
            viewers_by_age_gender=cells,
            emotion_shares={k: v / total for k, v in sorted(emotion.items())} if total > 0 else {},
            emotion_people=sum(1 for s in shares if s.emotion_s),
        )


def _parse_time(text: str, where: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(
            f"{where}: {text!r} is not an ISO 8601 time (e.g. 2026-12-07T10:00:00+01:00)"
        ) from exc
    if moment.tzinfo is None:
        raise ConfigError(f"{where}: {text!r} has no UTC offset; write it with one (e.g. +01:00 or Z)")
    return moment.timestamp()


def read_schedule(path: str | os.PathLike[str]) -> list[tuple[float, float, str]]:
    """Read a content schedule: CSV rows ``start,end,content`` (ISO 8601 with offset; a header
    row ``start,end,content`` is allowed). Returns ``(start, end, content)`` sorted by start.

    Raises:
        ConfigError: A row is malformed, ends before it starts, or overlaps another.
    """
    rows: list[tuple[float, float, str]] = []
    with open(path, newline="") as fh:
        for number, row in enumerate(csv.reader(fh), 1):
            if not row or row[0].strip().startswith("#"):
                continue
            if number == 1 and [c.strip().lower() for c in row] == ["start", "end", "content"]:
                continue
            where = f"{Path(path).name} line {number}"
            if len(row) != 3 or not row[2].strip():
                raise ConfigError(f"{where}: expected start,end,content; got {row}")
            start, end = _parse_time(row[0], where), _parse_time(row[1], where)
            if end <= start:
                raise ConfigError(
                    f"{where}: the end {row[1].strip()} is not after the start {row[0].strip()}"
                )
            rows.append((start, end, row[2].strip()))
    rows.sort()
    for (_, end, name), (start, _, other) in zip(rows, rows[1:], strict=False):
        if start < end:
            raise ConfigError(f"{path}: {name!r} and {other!r} overlap; one content item plays at a time")
    return rows


class ContentTimeline:
    """What plays when: switch points ``(time, content or None)`` from a schedule and live switches."""

    def __init__(self, schedule: list[tuple[float, float, str]] | None = None) -> None:
        self._times: list[float] = [-math.inf]
        self._items: list[str | None] = [None]
        for start, end, content in schedule or ():
            self.switch(start, content)
            if self.at(end) == content:
                self.switch(end, None)

    def switch(self, at: float, content: str | None) -> None:
        """From ``at`` on, ``content`` plays (``None``: nothing); a later switch stays after it."""
        index = bisect.bisect_right(self._times, at)
        if index > 0 and self._times[index - 1] == at:
            self._items[index - 1] = content
            return
        self._times.insert(index, at)
        self._items.insert(index, content)

    def at(self, t: float) -> str | None:
        """The content playing at ``t``."""
        return self._items[bisect.bisect_right(self._times, t) - 1]

    def play(self, t: float) -> tuple[float, float | None, str | None]:
        """``(start, end or None, content)`` of the play running at ``t``."""
        index = bisect.bisect_right(self._times, t) - 1
        end = self._times[index + 1] if index + 1 < len(self._times) else None
        return self._times[index], end, self._items[index]

    def segments(self, t0: float, t1: float) -> Iterator[tuple[float, float, float, str | None]]:
        """``(from, to, play start, content)`` pieces of ``[t0, t1]`` split at switches."""
        start = t0
        while start < t1:
            play_start, play_end, content = self.play(start)
            stop = t1 if play_end is None else min(t1, play_end)
            yield start, stop, play_start, content
            start = stop

    def forget_before(self, t: float) -> None:
        """Drop switches that no longer matter: those before the play running at ``t``."""
        index = bisect.bisect_right(self._times, t) - 1
        if index > 0:
            del self._times[1:index]
            del self._items[1:index]
            self._times[0], self._items[0] = -math.inf, None
