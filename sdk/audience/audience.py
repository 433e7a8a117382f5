"""The audience layer: visits, attention and aggregates from a stream of :class:`FrameResult`.

``Audience`` is driven by frames, and its clock is the frames' timestamps, so a live camera, a
replay and a test drive it the same way. It never holds an image; it reads each face's track
id, box, five landmarks (for the head pose), quality and estimates, and keeps per person only
what :class:`facesdk.audience.visits.VisitState` lists.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..faces.pose import head_pose
from ..results import FaceResult, FrameResult
from .looking import LookingConfig, is_looking
from .periods import ContentTimeline, Period
from .privacy import DEFAULT_K, suppress
from .records import Aggregate
from .sinks.base import Sink, close_all, publish_all
from .visits import Visit, VisitState, attributes_agree

__all__ = ["Audience", "AudienceConfig"]

log = logging.getLogger(__name__)

LOOKING_POSE_ITERATIONS = 0
"""Gauss-Newton steps of the head pose that decides looking, per face and frame. The closed form
alone errs 2.6 / 2.9 degrees (yaw / pitch, mean) on the pose tests' noisy landmarks against 2.1 /
2.2 refined, well inside a 30 / 20 degree cone, and cut the audience layer's cost in the six-face
live run from 3.8% to 1.1% of the process CPU time per frame (docs/benchmarks/audience.md)."""

Callback = Callable[[Visit], None]
SNAPSHOT_HISTORY_S = 3600.0
"""How far back :meth:`Audience.snapshot` lists closed windows."""


@dataclass(frozen=True, slots=True)
class AudienceConfig:
    """How visits are told apart and what counts as a viewer.

    Attributes:
        window_s: Aggregation window, aligned to the clock (60: each minute from :00).
        visit_timeout_s: A visit ends when its person has been out of view this long.
        merge_gap_s: A new track that starts within this time after another track of the
            same source was last seen, near it and with agreeing attributes, continues that visit.
        merge_distance: How near: the box centres at most this many face sizes apart.
        min_attention_s: Attention that makes a passer-by a viewer.
        hold_s: A face's looking state holds until its next frame, for at most this long.
        k: k-anonymity: published cells describe at least ``k`` people or none.
        look_after_s: ``on_look`` fires once a look has lasted this long.
    """

    window_s: float = 60.0
    visit_timeout_s: float = 2.0
    merge_gap_s: float = 1.0
    merge_distance: float = 1.0
    min_attention_s: float = 1.0
    hold_s: float = 1.0
    k: int = DEFAULT_K
    look_after_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("window_s", "visit_timeout_s", "hold_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"AudienceConfig.{name} must be positive seconds, got {getattr(self, name)}"
                )
        for name in ("merge_gap_s", "merge_distance", "min_attention_s", "look_after_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"AudienceConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.merge_gap_s >= self.visit_timeout_s:
            raise ConfigError(
                f"AudienceConfig.merge_gap_s ({self.merge_gap_s}) must be shorter than visit_timeout_s "
                f"({self.visit_timeout_s}): a visit must still be open to be rejoined"
            )
        if self.k < 1:
            raise ConfigError(f"AudienceConfig.k must be >= 1 person per published cell, got {self.k}")


@dataclass(eq=False)
class _Source:
    clock: float = -math.inf
    tracks: dict[int, VisitState] = field(default_factory=dict)
    visits: dict[int, VisitState] = field(default_factory=dict)
    windows: dict[float, Period] = field(default_factory=dict)
    plays: dict[float, Period] = field(default_factory=dict)
    in_view: int = 0


class Audience:
    """Visits, attention and aggregates of the people in front of one or more cameras.

    Args:
        config: Timeouts, thresholds and k (:class:`AudienceConfig`).
        looking: The cone of head poses that counts as looking (:class:`LookingConfig`).
        sinks: Where closed window and content records go, after :func:`suppress`; and visit
            records when ``per_visit``.
        per_visit: Publish a record per ended visit (off by default: per-person data).
        schedule: ``(start, end, content)`` rows (:func:`facesdk.audience.read_schedule`).
        on_enter: Called with the :class:`Visit` when a person enters.
        on_look: Called when a person's look has lasted ``config.look_after_s`` (once per look).
        on_leave: Called with the final :class:`Visit` when a visit ends.
    """

    def __init__(
        self,
        config: AudienceConfig | None = None,
        looking: LookingConfig | None = None,
        *,
        sinks: Sequence[Sink] = (),
        per_visit: bool = False,
        schedule: Sequence[tuple[float, float, str]] | None = None,
        on_enter: Callback | None = None,
        on_look: Callback | None = None,
        on_leave: Callback | None = None,
    ) -> None:
        self.config = config or AudienceConfig()
        self.looking = looking or LookingConfig()
        self.sinks = list(sinks)
        self.per_visit = per_visit
        self.on_enter, self.on_look, self.on_leave = on_enter, on_look, on_leave
        self._timeline = ContentTimeline(list(schedule or ()))
        self._sources: dict[str | None, _Source] = {}
        self._next_id = 1
        self._history: deque[tuple[float, dict[str, Any]]] = deque()
        self._closed = False
        self._warned_untracked = False

    # ---- driving -------------------------------------------------------------------------

    def content(self, content_id: str | None, at: float | None = None) -> None:
        """From ``at`` (default: the latest frame time seen) on, ``content_id`` plays (``None``: nothing)."""
        if at is None:
            clocks = [s.clock for s in self._sources.values() if s.clock > -math.inf]
            if not clocks:
                raise ConfigError(
                    "Audience.content(): no frame seen yet; pass at=<timestamp> to say when it starts"
                )
            at = max(clocks)
        self._timeline.switch(at, content_id)

    def consume(self, results: Iterable[FrameResult]) -> Iterator[FrameResult]:
        """Update with each result and yield it on (``for r in audience.consume(stream): ...``)."""
        for result in results:
            self.update(result)
            yield result

    def update(self, result: FrameResult) -> None:
        """Take one frame's results: advance that source's clock, visits and periods."""
        if self._closed:
            raise ConfigError("Audience.update() after close(); create a new Audience")
        state = self._sources.setdefault(result.source, _Source())
        t = float(result.timestamp)
        if t < state.clock:
            log.warning("frame %s of %r is older than the one before; dropped", result.index, result.source)
            return
        for visit in [v for v in state.visits.values() if t - v.last_seen > self.config.visit_timeout_s]:
            self._end_visit(state, visit)
        seen = self._match(state, result.faces, t)
        for visit, face in seen:
            self._observe(state, visit, face, t)
        state.in_view = len(seen)
        state.clock = t
        self._close_periods(state, t, final=False)
        self._timeline.forget_before(min(s.clock for s in self._sources.values()))

    def close(self) -> None:
        """End every visit and period (the last ones partial) and close the sinks."""
        if self._closed:
            return
        for state in self._sources.values():
            for visit in list(state.visits.values()):
                self._end_visit(state, visit)
            self._close_periods(state, state.clock, final=True)
        self._closed = True
        close_all(self.sinks)

    def __enter__(self) -> Audience:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading -------------------------------------------------------------------------

    def visits(self, source: str | None = None) -> list[Visit]:
        """The open visits (of one source, or all when ``source`` is None and only one exists)."""
        states = self._sources.values() if source is None else [self._sources.get(source, _Source())]
        return [v.snapshot(s.clock) for s in states for v in s.visits.values()]

    def snapshot(self) -> dict[str, Any]:
        """Live counts for a dashboard (keys documented in docs/audience.md):

        ``in_view`` and ``looking`` (people now, per source and ``"total"``), ``content`` (what
        plays now), ``windows`` (the last hour's closed window records, suppressed), ``k``.
        """
        in_view = {src or "default": s.in_view for src, s in self._sources.items()}
        looking = {
            src or "default": sum(1 for v in s.visits.values() if v.looking and v.last_seen == s.clock)
            for src, s in self._sources.items()
        }
        clocks = [s.clock for s in self._sources.values() if s.clock > -math.inf]
        return {
            "time": max(clocks) if clocks else None,
            "in_view": {**in_view, "total": sum(in_view.values())},
            "looking": {**looking, "total": sum(looking.values())},
            "content": self._timeline.at(max(clocks)) if clocks else None,
            "windows": [record for _, record in self._history],
            "k": self.config.k,
        }

    # ---- internals -----------------------------------------------------------------------

    def _new_visit(self, state: _Source, source: str | None, face: FaceResult, t: float) -> VisitState:
        visit = VisitState(self._next_id, source, t, t, face.box, [face.track_id])  # type: ignore[list-item]
        self._next_id += 1
        state.visits[visit.visit_id] = visit
        if self.on_enter is not None:
            self.on_enter(visit.snapshot(t))
        return visit

    def _rejoin(self, state: _Source, face: FaceResult, t: float, taken: set[int]) -> VisitState | None:
        """An open visit whose track broke off within the gap, near this face, with agreeing attributes."""
        x, y, w, h = face.box
        size = math.sqrt(max(w * h, 1e-9))
        best, best_distance = None, math.inf
        for visit in state.visits.values():
            if visit.visit_id in taken or not 0 < t - visit.last_seen <= self.config.merge_gap_s:
                continue
            vx, vy = visit.center()
            distance = math.hypot(x + w / 2 - vx, y + h / 2 - vy) / size
            vsize = math.sqrt(max(visit.box[2] * visit.box[3], 1e-9))
            if distance > self.config.merge_distance or not 0.5 <= size / vsize <= 2.0:
                continue
            if attributes_agree(visit, face) and distance < best_distance:
                best, best_distance = visit, distance
        return best

    def _match(
        self, state: _Source, faces: Sequence[FaceResult], t: float
    ) -> list[tuple[VisitState, FaceResult]]:
        seen: list[tuple[VisitState, FaceResult]] = []
        taken: set[int] = set()
        fresh: list[FaceResult] = []
        for face in faces:
            if face.track_id is None:
                if not self._warned_untracked:
                    log.warning(
                        "faces without a track id are not counted as visits (run a stream with tracking)"
                    )
                    self._warned_untracked = True
                continue
            visit = state.tracks.get(face.track_id)
            if visit is None or visit.visit_id not in state.visits:
                fresh.append(face)
            else:
                seen.append((visit, face))
                taken.add(visit.visit_id)
        for face in fresh:
            visit = self._rejoin(state, face, t, taken)
            if visit is None:
                visit = self._new_visit(state, self._source_of(state), face, t)
            else:
                visit.track_ids.append(face.track_id)  # type: ignore[arg-type]
            state.tracks[face.track_id] = visit  # type: ignore[index]
            seen.append((visit, face))
            taken.add(visit.visit_id)
        return seen

    def _source_of(self, state: _Source) -> str | None:
        return next(src for src, s in self._sources.items() if s is state)

    def _observe(self, state: _Source, visit: VisitState, face: FaceResult, t: float) -> None:
        if t > visit.last_seen:
            self._spread(state, visit, visit.last_seen, t)
        # every face of every frame: the closed-form pose (no refinement) is enough for the cone
        looking = is_looking(head_pose(face.landmarks, iterations=LOOKING_POSE_ITERATIONS), self.looking)
        if looking and (
            not visit.looking or visit.looking_since is None or t - visit.last_seen > self.config.hold_s
        ):
            visit.looking_since = t
            visit.look_reported = False
            if visit.first_look is None:
                visit.first_look = t
        visit.looking = looking
        if not looking:
            visit.looking_since = None
        visit.last_seen = t
        visit.box = face.box
        visit.add_estimate(face, t)
        emotion = face.emotion
        visit.emotion = None if emotion is None else emotion.label
        self._window(state, t).share(visit)
        play = self._play(state, t)
        if play is not None:
            play.share(visit)
        if (
            looking
            and not visit.look_reported
            and visit.looking_since is not None
            and t - visit.looking_since >= self.config.look_after_s
        ):
            visit.look_reported = True
            if self.on_look is not None:
                self.on_look(visit.snapshot(t))

    def _spread(self, state: _Source, visit: VisitState, t0: float, t1: float) -> None:
        """Add the interval ``[t0, t1]`` to the visit and to every window and play it overlaps."""
        attends = visit.looking and t1 - t0 <= self.config.hold_s
        if attends:
            visit.attention_s += t1 - t0
            if visit.emotion is not None:
                visit.emotion_time[visit.emotion] = visit.emotion_time.get(visit.emotion, 0.0) + t1 - t0
        window_s = self.config.window_s
        start = t0
        while start < t1:
            stop = min(t1, (math.floor(start / window_s) + 1) * window_s)
            self._credit(self._window(state, start), visit, stop - start, attends)
            start = stop
        for lo, hi, _, content in self._timeline.segments(t0, t1):
            if content is not None:
                self._credit(self._play(state, lo), visit, hi - lo, attends)

    def _credit(self, period: Period | None, visit: VisitState, seconds: float, attends: bool) -> None:
        if period is None:
            return
        share = period.share(visit)
        share.dwell_s += seconds
        if attends:
            share.attention_s += seconds
            if visit.emotion is not None:
                share.emotion_s[visit.emotion] = share.emotion_s.get(visit.emotion, 0.0) + seconds

    def _window(self, state: _Source, t: float) -> Period:
        start = math.floor(t / self.config.window_s) * self.config.window_s
        window = state.windows.get(start)
        if window is None:
            window = Period("window", self._source_of(state), start, start + self.config.window_s)
            state.windows[start] = window
        return window

    def _play(self, state: _Source, t: float) -> Period | None:
        start, end, content = self._timeline.play(t)
        if content is None:
            return None
        period = state.plays.get(start)
        if period is None or period.content != content:
            period = state.plays[start] = Period("content", self._source_of(state), start, end, content)
        return period

    def _close_periods(self, state: _Source, t: float, *, final: bool) -> None:
        """Publish the windows and plays of a source that ended ``visit_timeout_s`` before ``t`` (all when
        ``final``): until then a visit still open may add time from before their end."""
        t_closed = t - self.config.visit_timeout_s
        if not final:
            self._window(state, t)  # a frame with nobody in view still makes its window count
        for start, window in sorted(state.windows.items()):
            assert window.end is not None
            if final or window.end <= t_closed:
                self._publish_period(window, min(window.end, max(t, start)))
                del state.windows[start]
        for start, play in sorted(state.plays.items()):
            _, end, _ = self._timeline.play(start)
            play.end = end
            if final or (end is not None and end <= t_closed):
                self._publish_period(play, t if end is None else min(end, max(t, start)))
                del state.plays[start]

    def _publish_period(self, period: Period, stopped: float) -> None:
        aggregate: Aggregate = period.aggregate(self.config.min_attention_s, stopped)
        record = suppress(aggregate.to_json(), self.config.k)
        if period.kind == "window":
            self._history.append((period.start, record))
            while self._history and period.start - self._history[0][0] >= SNAPSHOT_HISTORY_S:
                self._history.popleft()
        publish_all(self.sinks, record)

    def _end_visit(self, state: _Source, visit: VisitState) -> None:
        del state.visits[visit.visit_id]
        for track in visit.track_ids:
            if state.tracks.get(track) is visit:
                del state.tracks[track]
        final = visit.snapshot()
        if self.on_leave is not None:
            self.on_leave(final)
        if self.per_visit:
            publish_all(self.sinks, final.to_json())
