"""Per-track inference scheduling for streams: which faces go through the backbone, and when.

Age, gender and emotion of a tracked person change over seconds, not frames. A stream
therefore detects and tracks every frame but asks the backbone (the classifier,
:mod:`facesdk.streams.classifier`) for a face only when

1. its track is new (never estimated) — new tracks go first, oldest waiting first;
2. its estimate would be older than ``refresh_s`` by the time a new one can land (judged by the
   longest of the last few frame intervals plus, for asynchronous streams, the classifier's
   recent delay) — the stalest first;
3. a clearly better view appears than the one last inferred: a box ``better_area_ratio``
   times larger, a detector score ``better_score_margin`` higher, or a quality
   ``better_quality_margin`` higher;

at most ``max_crops_per_frame`` faces per frame, and never a track whose last request has not
been answered yet. Every face of every frame carries its track's latest estimate, with
``FaceResult.inferred`` (the estimate comes from this frame's crop) and
``FaceResult.estimate_age_s`` (stream seconds since the frame whose crop produced it).

Bounds: ``n`` faces that appear at once are all requested within ``ceil(n / max_crops_per_frame)``
frames (their faces carry no attributes until the estimate lands). No estimate exceeds
``refresh_s`` while frames arrive at a steady rate and the backbone keeps up, i.e. while
``tracks <= max_crops_per_frame * fps * refresh_s`` and the backbone runs that many crops a second.

Thread safety: one :class:`StreamScheduler` belongs to one stream. Its tracks never leave its
lock: :meth:`~StreamScheduler.plan` (detect thread), :meth:`~StreamScheduler.deliver`
(a classifier thread) and :meth:`~StreamScheduler.label` (the caller's thread) all take it, and
plans carry track ids, not track objects.

Stream time is each frame's timestamp (its capture time, or what the stream's ``clock`` gives),
so a replayed video or a test can drive the schedule with explicit times.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import ConfigError
from ..results import Detection, FaceResult, Prediction, Quality
from .tracking import IoUTracker, Track, TrackerConfig

__all__ = ["BETTER_VIEW", "NEW_TRACK", "STALE", "FramePlan", "ScheduleConfig", "StreamScheduler"]

NEW_TRACK, STALE, BETTER_VIEW = 0.0, 1.0, 2.0
"""The first element of a face's schedule key: why it is inferred (lower goes first)."""

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
        backbone_nice: Niceness (Linux scheduling priority, 0-19) the backbone's threads run at
            while a stream classifies in the background: when the frame path (capture, detect,
            track) and the backbone want the same core, the frame path goes first, and the
            backbone still takes every cycle left over. 0 leaves priorities alone.
    """

    enabled: bool = True
    refresh_s: float = 0.9
    max_crops_per_frame: int = 2
    better_area_ratio: float = 1.5
    better_score_margin: float = 0.1
    better_quality_margin: float = 0.15
    backbone_nice: int = 5

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
        if (
            isinstance(self.backbone_nice, bool)
            or not isinstance(self.backbone_nice, int)
            or not 0 <= self.backbone_nice <= 19
        ):
            raise ConfigError(f"backbone_nice must be an integer in [0, 19], got {self.backbone_nice!r}")
        for name in ("better_score_margin", "better_quality_margin"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 (use inf to ignore it), got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class FramePlan:
    """One frame's schedule: its detections, their tracks and which of them to infer.

    Attributes:
        timestamp: Stream time of the frame (s).
        detections: Every face found in the frame.
        track_ids: The track id of each detection (``None`` each when the stream does not track).
        infer: Indices into ``detections`` to send to the backbone, in detection order.
        priorities: The schedule's sort key of each face in ``infer`` (lower goes first).
        qualities: Each detection's :class:`~facesdk.results.Quality` when measured (else empty).
        estimates: Each detection's track estimate and its stream time when planned (kept in
            case the track ends before the frame is labelled).
        skipped: Faces that were due but skipped for low quality (``min_quality``).
    """

    timestamp: float
    detections: tuple[Detection, ...]
    track_ids: tuple[int | None, ...]
    infer: tuple[int, ...]
    priorities: tuple[tuple[float, ...], ...] = ()
    qualities: tuple[Quality | None, ...] = ()
    estimates: tuple[tuple[Mapping[str, Prediction], float | None], ...] = ()
    skipped: int = 0

    def quality(self, i: int) -> Quality | None:
        """The measured quality of detection ``i``, or ``None``."""
        return self.qualities[i] if i < len(self.qualities) else None

    @property
    def to_infer(self) -> list[Detection]:
        """The detections to send to the backbone."""
        return [self.detections[i] for i in self.infer]


def _area(box: Sequence[float]) -> float:
    return float(box[2]) * float(box[3])


LATENCY_SMOOTHING = 0.3
"""Weight of the newest request-to-estimate delay in the running delay an asynchronous stream
adds to its refresh lead."""


class StreamScheduler:
    """Tracks one stream's faces, decides which to infer, folds estimates in, labels every face.

    Args:
        tracker: Tracker settings, or ``None`` for no tracking (then every face is inferred).
        schedule: Scheduling settings (default :class:`ScheduleConfig`).
        min_quality: Due faces whose quality score is below this are not sent (they keep their
            track's estimate) and are counted in :attr:`FramePlan.skipped`.
        anticipate: Add the classifier's recent delay to the refresh lead (asynchronous streams,
            where an estimate lands some time after its frame).
    """

    def __init__(
        self,
        tracker: TrackerConfig | None,
        schedule: ScheduleConfig | None = None,
        min_quality: float = 0.0,
        anticipate: bool = False,
    ) -> None:
        self.schedule = schedule or ScheduleConfig()
        self.tracker = IoUTracker(tracker) if tracker is not None else None
        self.min_quality = min_quality
        self.anticipate = anticipate
        self._lock = threading.Lock()
        self._last_time: float | None = None
        self._intervals: deque[float] = deque(maxlen=LEAD_FRAMES)
        self._pending: set[int] = set()
        self._delay = 0.0

    @property
    def tracking(self) -> bool:
        return self.tracker is not None

    def _wanted(self, track: Track, det: Detection, quality: float | None, now: float, lead: float) -> tuple:
        """Sort key for a face that should be inferred, or ``()`` when it need not be."""
        cfg = self.schedule
        if track.track_id in self._pending:
            return ()
        if track.inferred_at is None:
            return (NEW_TRACK, float(track.first_seen), -_area(det.box))
        age = now - track.inferred_at
        # stalest first, by when the estimate's crop was taken: a key that stays true while the
        # request waits (an age taken at planning would rank a later request's younger age first)
        since = track.estimate_time if track.estimate_time is not None else track.inferred_at
        if age + lead >= cfg.refresh_s:
            return (STALE, since)
        area, score, last_quality = track.inferred_view or (0.0, 0.0, None)
        better = (
            _area(det.box) >= area * cfg.better_area_ratio or det.score >= score + cfg.better_score_margin
        )
        if quality is not None and last_quality is not None:
            better = better or quality >= last_quality + cfg.better_quality_margin
        return (BETTER_VIEW, since) if better else ()

    def plan(
        self,
        detections: Sequence[Detection],
        timestamp: float,
        qualities: Sequence[Quality | float | None] | None = None,
    ) -> FramePlan:
        """Track one frame's detections and choose the faces to infer (marks their tracks pending).

        ``qualities`` (one per detection: a :class:`~facesdk.results.Quality` or its score) let a
        clearly better view be re-inferred and low-quality faces be skipped; given as
        ``Quality``, they are carried onto the results.
        """
        dets = tuple(detections)
        measured = tuple(q if isinstance(q, Quality) else None for q in qualities or ())
        scores = [q.score if isinstance(q, Quality) else q for q in qualities or [None] * len(dets)]
        good = [s is None or s >= self.min_quality for s in scores]
        if self.tracker is None:
            chosen = tuple(i for i in range(len(dets)) if good[i])
            keys = tuple((0.0,) for _ in chosen)
            return FramePlan(timestamp, dets, (None,) * len(dets), chosen, keys, measured, (), 0)
        with self._lock:
            tracks = self.tracker.assign([d.box for d in dets])
            if self._last_time is not None:
                self._intervals.append(max(0.0, timestamp - self._last_time))
            self._last_time = timestamp
            lead = max(self._intervals, default=0.0)  # the longest recent frame interval: jitter-proof
            if self.anticipate:
                lead += self._delay
            if not self.schedule.enabled:
                keys = [(0.0,)] * len(dets)
            else:
                keys = [
                    self._wanted(t, d, q, timestamp, lead)
                    for t, d, q in zip(tracks, dets, scores, strict=True)
                ]
            skipped = sum(1 for k, ok in zip(keys, good, strict=True) if k and not ok)
            order = sorted((k, i) for i, k in enumerate(keys) if k and good[i])
            if self.schedule.enabled:
                order = order[: self.schedule.max_crops_per_frame]
            chosen = sorted(i for _, i in order)
            for i in chosen:
                tracks[i].inferred_at = timestamp
                tracks[i].inferred_view = (_area(dets[i].box), dets[i].score, scores[i])
                if self.schedule.enabled:
                    self._pending.add(tracks[i].track_id)
            return FramePlan(
                timestamp,
                dets,
                tuple(t.track_id for t in tracks),
                tuple(chosen),
                tuple(keys[i] for i in chosen),
                measured,
                tuple((dict(t.estimate), t.estimate_time) for t in tracks),
                skipped,
            )

    def wants(self, track_id: int | None) -> bool:
        """Whether an estimate for this track is still of use (the track has not ended)."""
        if track_id is None or self.tracker is None:
            return True
        with self._lock:
            return self.tracker.get(track_id) is not None

    def deliver(
        self, track_id: int | None, face: FaceResult, timestamp: float, delay_s: float | None = None
    ) -> FaceResult:
        """Fold the backbone's result for a face of the frame at ``timestamp`` into its track.

        Returns the face with the track's smoothed attributes (the face itself without tracking).
        ``delay_s`` (seconds from request to result) feeds the running delay of :attr:`anticipate`.
        """
        if track_id is None or self.tracker is None:
            return face
        with self._lock:
            self._pending.discard(track_id)
            if delay_s is not None:
                self._delay += LATENCY_SMOOTHING * (delay_s - self._delay)
            track = self.tracker.get(track_id)
            if track is None or not face.estimated:
                return replace(face, track_id=track_id)
            if track.estimate_time is not None and timestamp < track.estimate_time:
                return replace(face, track_id=track_id)  # an older view than the estimate: keep the newer
            if track.inferred_at is None or timestamp > track.inferred_at:
                track.inferred_at = timestamp  # a refreshed crop: its age counts from its own frame
            attributes = track.absorb(face.attributes, timestamp, self.tracker.config.smoothing)
            return replace(face, track_id=track_id, attributes=attributes, estimate_age_s=0.0)

    def cancel(self, track_id: int | None) -> None:
        """Forget a request that will not be answered (the track becomes due again)."""
        if track_id is None or self.tracker is None:
            return
        with self._lock:
            self._pending.discard(track_id)
            track = self.tracker.get(track_id)
            if track is not None:
                track.inferred_at = track.estimate_time

    def merge(self, plan: FramePlan, inferred: Sequence[FaceResult]) -> tuple[FaceResult, ...]:
        """Deliver the backbone's results for ``plan.infer`` (in that order) and label the frame.

        The synchronous form of :meth:`deliver` + :meth:`label`, for a caller that runs the
        backbone itself.
        """
        if len(inferred) != len(plan.infer):
            raise ValueError(f"expected {len(plan.infer)} inferred faces, got {len(inferred)}")
        delivered = {
            i: self.deliver(plan.track_ids[i], face, plan.timestamp)
            for i, face in zip(plan.infer, inferred, strict=True)
        }
        return self.label(plan, delivered)

    def label(self, plan: FramePlan, delivered: Mapping[int, FaceResult]) -> tuple[FaceResult, ...]:
        """Every face of the planned frame with its track's latest estimate.

        Args:
            plan: The frame's plan from :meth:`plan`.
            delivered: Results of this frame's own requests that have landed, by detection index
                (from :meth:`deliver`); a frame that waited for its estimates has them all.
        """
        out = []
        with self._lock:
            for i, det in enumerate(plan.detections):
                quality = plan.quality(i)
                track_id = plan.track_ids[i]
                face = delivered.get(i)
                if face is not None and face.estimated:
                    quality = face.quality if face.quality is not None else quality
                    out.append(replace(face, inferred=True, estimate_age_s=0.0, quality=quality))
                    continue
                attributes: Mapping[str, Prediction] = {}
                when: float | None = None
                if track_id is not None:
                    attributes, when = plan.estimates[i]
                    track = self.tracker.get(track_id) if self.tracker is not None else None
                    latest = None if track is None else track.estimate_time
                    if (
                        latest is not None and latest <= plan.timestamp
                    ):  # never an estimate from a later frame
                        attributes, when = track.estimate, latest
                age = 0.0 if when is None else max(0.0, plan.timestamp - when)
                out.append(
                    FaceResult(
                        box=det.box,
                        score=det.score,
                        landmarks=det.landmarks,
                        attributes=dict(attributes),
                        track_id=track_id,
                        inferred=when is not None and when == plan.timestamp,  # a refreshed crop of it
                        estimate_age_s=age,
                        quality=quality,
                    )
                )
        return tuple(out)
