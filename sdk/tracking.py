"""A light IoU tracker with per-track exponential smoothing of probabilities.

Tracks are matched greedily by IoU between consecutive frames; a track that is not seen
for ``max_age`` frames ends. With ``smoothing = a`` (0 <= a < 1) each track's probabilities
become ``a * previous + (1 - a) * current``; ``a = 0`` turns smoothing off. The Analyzer uses
a fresh tracker per stream and none for single images.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import ConfigError
from .results import FaceResult, Prediction

__all__ = ["IoUTracker", "TrackerConfig", "iou", "iou_matrix"]


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


@dataclass(slots=True)
class _Track:
    box: tuple[float, float, float, float]
    last_seen: int
    probs: dict[str, np.ndarray] = field(default_factory=dict)


class IoUTracker:
    """Gives faces stable ``track_id``s across frames and smooths their probabilities."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._frame = 0
        self._lock = threading.Lock()

    def _match(self, faces: Sequence[FaceResult]) -> list[int | None]:
        ids = list(self._tracks)
        assigned: list[int | None] = [None] * len(faces)
        if not ids or not faces:
            return assigned
        scores = iou_matrix([f.box for f in faces], [self._tracks[i].box for i in ids])
        used: set[int] = set()
        for flat in np.argsort(-scores, axis=None):
            fi, ti = divmod(int(flat), len(ids))
            if scores[fi, ti] < self.config.iou_threshold:
                break
            if assigned[fi] is None and ti not in used:
                assigned[fi] = ids[ti]
                used.add(ti)
        return assigned

    def _smooth(self, track: _Track, face: FaceResult) -> dict[str, Prediction]:
        alpha = self.config.smoothing
        out = {}
        for task, pred in face.attributes.items():
            labels = tuple(pred.probs)
            current = np.array([pred.probs[k] for k in labels], dtype=np.float64)
            previous = track.probs.get(task)
            if alpha > 0 and previous is not None and previous.shape == current.shape:
                current = alpha * previous + (1.0 - alpha) * current
            track.probs[task] = current
            out[task] = Prediction.from_probs(labels, current / current.sum())
        return out

    def update(self, faces: Sequence[FaceResult]) -> tuple[FaceResult, ...]:
        """Assign track ids (and smoothed predictions) to one frame's faces, in order."""
        with self._lock:
            self._frame += 1
            out = []
            for face, track_id in zip(faces, self._match(faces), strict=True):
                if track_id is None:
                    track_id, self._next_id = self._next_id, self._next_id + 1
                    self._tracks[track_id] = _Track(box=face.box, last_seen=self._frame)
                track = self._tracks[track_id]
                track.box, track.last_seen = face.box, self._frame
                out.append(replace(face, track_id=track_id, attributes=self._smooth(track, face)))
            stale = [i for i, t in self._tracks.items() if self._frame - t.last_seen > self.config.max_age]
            for track_id in stale:
                del self._tracks[track_id]
            return tuple(out)

    def reset(self) -> None:
        """Forget every track (ids keep increasing)."""
        with self._lock:
            self._tracks.clear()
