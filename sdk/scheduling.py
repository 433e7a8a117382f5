"""Per-track inference scheduling for streams: which faces of a frame go through the backbone.

Age, gender and emotion of a tracked person change over seconds, not frames. A stream
therefore detects and tracks every frame but sends a face to the backbone only when

1. its track is new (never estimated) — new tracks go first, oldest waiting first;
2. its estimate would be older than ``refresh_s`` by the next frame (judged by the longest of
   the last few frame intervals) — the stalest first;
3. a clearly better view appears than the one last inferred: a box ``better_area_ratio``
   times larger, a detector score ``better_score_margin`` higher, or (when a quality score is
   given) a quality ``better_quality_margin`` higher;

at most ``max_crops_per_frame`` faces per frame. Every face of every frame still carries its
track's latest estimate, with ``FaceResult.inferred`` (this frame ran the backbone on it) and
``FaceResult.estimate_age_s`` (stream seconds since the frame that produced the estimate).

Bounds: ``n`` faces that appear at once are all inferred within ``ceil(n / max_crops_per_frame)``
frames (their faces carry no attributes until then). No estimate exceeds ``refresh_s`` while
frames arrive at a steady rate and the budget covers the refreshes, i.e. while
``tracks <= max_crops_per_frame * fps * refresh_s``.

Stream time is each frame's timestamp (its capture time, or what the stream's ``clock`` gives),
so a replayed video or a test can drive the schedule with explicit times.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .errors import ConfigError
from .results import Detection, FaceResult, Quality
from .tracking import IoUTracker, Track, TrackerConfig

__all__ = ["FramePlan", "ScheduleConfig", "StreamScheduler"]

LEAD_FRAMES = 8
"""A refresh is due when the estimate would pass ``refresh_s`` within the longest of the last
this-many frame intervals (so an uneven frame rate does not let estimates overrun)."""


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """When a tracked face is sent to the backbone (see the module docstring).

    Attributes:
        enabled: ``False`` infers every face of every frame (the tracker still smooths).
        refresh_s: Most stream seconds an estimate may age before it is re-inferred. The default,
            0.9, keeps every estimate under 1 s when frames arrive unevenly (a frame that ran the
            backbone arrives late); the stream benchmark saw 1.00-1.004 s at 1.0.
        max_crops_per_frame: Most faces sent to the backbone per frame.
        better_area_ratio: A box this many times the area of the last inferred view is a better view.
        better_score_margin: A detector score this much higher is a better view.
        better_quality_margin: A ``FaceResult.quality`` score this much higher is a better view.
    """

    enabled: bool = True
    refresh_s: float = 0.9
    max_crops_per_frame: int = 2
    better_area_ratio: float = 1.5
    better_score_margin: float = 0.1
    better_quality_margin: float = 0.15

    def __post_init__(self) -> None:
        if not (math.isfinite(self.refresh_s) and self.refresh_s > 0):
            raise ConfigError(f"refresh_s must be a positive number of seconds, got {self.refresh_s}")
        if (
            isinstance(self.max_crops_per_frame, bool)
            or int(self.max_crops_per_frame) != self.max_crops_per_frame
        ):
            raise ConfigError(f"max_crops_per_frame must be an integer, got {self.max_crops_per_frame!r}")
        if self.max_crops_per_frame < 1:
            raise ConfigError(f"max_crops_per_frame must be >= 1, got {self.max_crops_per_frame}")
        if not self.better_area_ratio > 1.0:
            raise ConfigError(
                f"better_area_ratio must be > 1 (use inf to ignore box size), got {self.better_area_ratio}"
            )
        for name in ("better_score_margin", "better_quality_margin"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 (use inf to ignore it), got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class FramePlan:
    """One frame's schedule: its detections, their tracks and which of them to infer.

    Attributes:
        timestamp: Stream time of the frame (s).
        detections: Every face found in the frame.
        tracks: The track of each detection (``None`` each when the stream does not track).
        infer: Indices into ``detections`` to send to the backbone, in detection order.
        qualities: Each detection's :class:`~facesdk.results.Quality` when the stream measured
            it (empty otherwise); :meth:`StreamScheduler.merge` puts it on every face.
    """

    timestamp: float
    detections: tuple[Detection, ...]
    tracks: tuple[Track | None, ...]
    infer: tuple[int, ...]
    qualities: tuple[Quality | None, ...] = ()

    def quality(self, i: int) -> Quality | None:
        """The measured quality of detection ``i``, or ``None``."""
        return self.qualities[i] if i < len(self.qualities) else None

    @property
    def to_infer(self) -> list[Detection]:
        """The detections to send to the backbone."""
        return [self.detections[i] for i in self.infer]


def _area(box: Sequence[float]) -> float:
    return float(box[2]) * float(box[3])


class StreamScheduler:
    """Tracks one stream's faces and decides which to infer (:meth:`plan`), then folds results in (:meth:`merge`).

    :meth:`plan` and :meth:`merge` may run in different threads (detection ahead of the
    backbone) as long as frames are merged in the order they were planned.

    Args:
        tracker: Tracker settings, or ``None`` for no tracking (then every face is inferred).
        schedule: Scheduling settings (default :class:`ScheduleConfig`).
    """

    def __init__(self, tracker: TrackerConfig | None, schedule: ScheduleConfig | None = None) -> None:
        self.schedule = schedule or ScheduleConfig()
        self.tracker = IoUTracker(tracker) if tracker is not None else None
        self._last_time: float | None = None
        self._intervals: deque[float] = deque(maxlen=LEAD_FRAMES)

    def _wanted(self, track: Track, det: Detection, quality: float | None, now: float, lead: float) -> tuple:
        """Sort key for a face that should be inferred, or ``()`` when it need not be."""
        cfg = self.schedule
        if track.inferred_at is None:
            return (0, track.first_seen, -_area(det.box))
        age = now - track.inferred_at
        if age + lead >= cfg.refresh_s:
            return (1, -age)
        area, score, last_quality = track.inferred_view or (0.0, 0.0, None)
        better = (
            _area(det.box) >= area * cfg.better_area_ratio or det.score >= score + cfg.better_score_margin
        )
        if quality is not None and last_quality is not None:
            better = better or quality >= last_quality + cfg.better_quality_margin
        return (2, -age) if better else ()

    def plan(
        self,
        detections: Sequence[Detection],
        timestamp: float,
        qualities: Sequence[Quality | float | None] | None = None,
    ) -> FramePlan:
        """Track one frame's detections and choose the faces to infer (marks them scheduled).

        ``qualities`` (one per detection: a :class:`~facesdk.results.Quality` or its score) let a
        clearly better view be re-inferred; given as ``Quality``, they are carried onto the results.
        """
        dets = tuple(detections)
        measured = tuple(q if isinstance(q, Quality) else None for q in qualities or ())
        if self.tracker is None:
            return FramePlan(timestamp, dets, (None,) * len(dets), tuple(range(len(dets))), measured)
        tracks = self.tracker.assign([d.box for d in dets])
        if self._last_time is not None:
            self._intervals.append(max(0.0, timestamp - self._last_time))
        self._last_time = timestamp
        lead = max(self._intervals, default=0.0)  # the longest recent frame interval: jitter-proof
        scores = [q.score if isinstance(q, Quality) else q for q in qualities or [None] * len(dets)]
        if not self.schedule.enabled:
            chosen = list(range(len(dets)))
        else:
            keys = [
                self._wanted(t, d, q, timestamp, lead) for t, d, q in zip(tracks, dets, scores, strict=True)
            ]
            order = sorted((k, i) for i, k in enumerate(keys) if k)
            chosen = sorted(i for _, i in order[: self.schedule.max_crops_per_frame])
        for i in chosen:
            tracks[i].inferred_at = timestamp
            tracks[i].inferred_view = (_area(dets[i].box), dets[i].score, scores[i])
        return FramePlan(timestamp, dets, tuple(tracks), tuple(chosen), measured)

    def merge(self, plan: FramePlan, inferred: Sequence[FaceResult]) -> tuple[FaceResult, ...]:
        """Every face of the planned frame with its track's latest estimate.

        Args:
            plan: The frame's plan from :meth:`plan`.
            inferred: The backbone's results for ``plan.infer``, in that order.
        """
        if len(inferred) != len(plan.infer):
            raise ValueError(f"expected {len(plan.infer)} inferred faces, got {len(inferred)}")
        if self.tracker is None:
            return tuple(
                f if f.quality is not None else replace(f, quality=plan.quality(i))
                for i, f in zip(plan.infer, inferred, strict=True)
            )
        alpha = self.tracker.config.smoothing
        fresh = dict(zip(plan.infer, inferred, strict=True))
        out = []
        for i, (det, track) in enumerate(zip(plan.detections, plan.tracks, strict=True)):
            assert track is not None
            face = fresh.get(i)
            if face is not None and face.inferred and face.estimated:
                attributes = track.absorb(face.attributes, plan.timestamp, alpha)
                quality = face.quality if face.quality is not None else plan.quality(i)
                out.append(
                    replace(
                        face,
                        track_id=track.track_id,
                        attributes=attributes,
                        estimate_age_s=0.0,
                        quality=quality,
                    )
                )
                continue
            if face is not None:  # the pipeline skipped it (e.g. low quality): stay due
                track.inferred_at = track.estimate_time
            age = 0.0 if track.estimate_time is None else max(0.0, plan.timestamp - track.estimate_time)
            out.append(
                FaceResult(
                    box=det.box,
                    score=det.score,
                    landmarks=det.landmarks,
                    attributes=dict(track.estimate),
                    track_id=track.track_id,
                    inferred=False,
                    estimate_age_s=age,
                    quality=plan.quality(i) if face is None or face.quality is None else face.quality,
                )
            )
        return tuple(out)
