"""A light IoU tracker that keeps each track's latest estimate, smoothed once per inference.

Tracks are matched greedily by IoU between consecutive frames; a track that is not seen
for ``max_age`` frames ends. Each :class:`Track` holds the latest estimate of its face's
attributes: with ``smoothing = a`` (0 <= a < 1) a new inference ``p`` of the track becomes
``a * previous + (1 - a) * p`` (``a`` weighs the *old* estimate; ``a = 0`` turns smoothing
off). Smoothing runs once per new inference, never once per frame, so a face that is not
re-inferred keeps its estimate unchanged. Which faces are inferred is decided elsewhere
(:mod:`facesdk.scheduling`); :meth:`IoUTracker.update` is the every-face-every-frame form.
The Analyzer uses a fresh tracker per stream and none for single images; in a stream the
tracker belongs to the stream's :class:`~facesdk.streams.scheduling.StreamScheduler`, whose lock
guards every track (the tracker's own lock guards only its table).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ConfigError
from ..results import FaceResult, Prediction

__all__ = ["IoUTracker", "Track", "TrackerConfig", "iou", "iou_matrix", "smooth"]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    return float(iou_matrix([a], [b])[0, 0])


def iou_matrix(boxes_a: Sequence[Sequence[float]], boxes_b: Sequence[Sequence[float]]) -> np.ndarray:
    """Pairwise IoU of (x, y, w, h) boxes: an ``len(a) x len(b)`` array."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Tracker settings: IoU to match, frames a lost track survives, smoothing factor."""

    iou_threshold: float = 0.3
    max_age: int = 10
    smoothing: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ConfigError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_age < 0:
            raise ConfigError(f"max_age must be >= 0, got {self.max_age}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1) (0 turns it off), got {self.smoothing}")


def smooth(previous: np.ndarray | None, current: np.ndarray, alpha: float) -> np.ndarray:
    """One smoothing step: ``alpha * previous + (1 - alpha) * current`` (``alpha`` weighs the old estimate)."""
    if alpha <= 0 or previous is None or previous.shape != current.shape:
        return current
    return alpha * previous + (1.0 - alpha) * current


@dataclass(slots=True)
class Track:
    """One tracked face.

    Attributes:
        track_id: Stable id within the stream.
        box: Latest box (x, y, w, h).
        first_seen: Tracker frame counter when the track began.
        last_seen: Tracker frame counter when the track was last matched.
        estimate: Latest (smoothed) attributes; empty until the first inference.
        estimate_time: Stream time (s) of the frame whose inference made ``estimate``.
        inferred_at: Stream time of the last frame *scheduled* for inference (set at planning,
            before the result exists, so a pipelined stream does not ask twice).
        inferred_view: ``(area, score, quality)`` of the face in that frame.
    """

    track_id: int
    box: tuple[float, float, float, float]
    first_seen: int
    last_seen: int
    estimate: Mapping[str, Prediction] = field(default_factory=dict)
    estimate_time: float | None = None
    inferred_at: float | None = None
    inferred_view: tuple[float, float, float | None] | None = None
    _probs: dict[str, np.ndarray] = field(default_factory=dict)

    def absorb(
        self, attributes: Mapping[str, Prediction], timestamp: float, alpha: float
    ) -> dict[str, Prediction]:
        """Fold one new inference into the estimate (one smoothing step) and return it."""
        out = {}
        for task, pred in attributes.items():
            labels = tuple(pred.probs)
            current = np.array([pred.probs[k] for k in labels], dtype=np.float64)
            blended = smooth(self._probs.get(task), current, alpha)
            self._probs[task] = blended
            out[task] = Prediction.from_probs(labels, blended / blended.sum())
        self.estimate, self.estimate_time = out, timestamp
        return out


class IoUTracker:
    """Gives faces stable ``track_id``s across frames and keeps each track's estimate."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: dict[int, Track] = {}
        self._next_id = 1
        self._frame = 0
        self._lock = threading.Lock()

    @property
    def frame(self) -> int:
        """Frames seen so far (the counter ``first_seen``/``last_seen`` refer to)."""
        return self._frame

    def _match(self, boxes: Sequence[Sequence[float]]) -> list[int | None]:
        ids = list(self._tracks)
        assigned: list[int | None] = [None] * len(boxes)
        if not ids or not len(boxes):
            return assigned
        scores = iou_matrix(boxes, [self._tracks[i].box for i in ids])
        used: set[int] = set()
        for flat in np.argsort(-scores, axis=None):
            fi, ti = divmod(int(flat), len(ids))
            if scores[fi, ti] < self.config.iou_threshold:
                break
            if assigned[fi] is None and ti not in used:
                assigned[fi] = ids[ti]
                used.add(ti)
        return assigned

    def get(self, track_id: int) -> Track | None:
        """The live track with this id, or ``None`` once it has ended."""
        with self._lock:
            return self._tracks.get(track_id)

    def assign(self, boxes: Sequence[tuple[float, float, float, float]]) -> list[Track]:
        """Match one frame's boxes to tracks (new tracks for the unmatched), in order; end lost tracks."""
        with self._lock:
            self._frame += 1
            out = []
            for box, track_id in zip(boxes, self._match(boxes), strict=True):
                if track_id is None:
                    track_id, self._next_id = self._next_id, self._next_id + 1
                    self._tracks[track_id] = Track(track_id, box, self._frame, self._frame)
                track = self._tracks[track_id]
                track.box, track.last_seen = box, self._frame
                out.append(track)
            stale = [i for i, t in self._tracks.items() if self._frame - t.last_seen > self.config.max_age]
            for track_id in stale:
                del self._tracks[track_id]
            return out

    def update(self, faces: Sequence[FaceResult], timestamp: float = 0.0) -> tuple[FaceResult, ...]:
        """Every face inferred this frame: assign track ids and fold each inference into its track."""
        tracks = self.assign([f.box for f in faces])
        alpha = self.config.smoothing
        return tuple(
            replace(face, track_id=track.track_id, attributes=track.absorb(face.attributes, timestamp, alpha))
            for face, track in zip(faces, tracks, strict=True)
        )

    def reset(self) -> None:
        """Forget every track (ids keep increasing)."""
        with self._lock:
            self._tracks.clear()
