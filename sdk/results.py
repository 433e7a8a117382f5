"""Typed, frozen results: Detection -> FaceResult -> FrameResult, each serialisable to JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Detection", "Prediction", "FaceResult", "FrameResult"]


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True, slots=True)
class Detection:
    """A detected face: ``box`` (x, y, w, h) in frame pixels, ``score``, five ``landmarks``.

    Landmarks are (x, y) pairs in the detector's order: right eye, left eye, nose tip,
    right mouth corner, left mouth corner (right/left as seen from the person).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    def to_json(self) -> dict[str, Any]:
        return {"box": list(self.box), "score": self.score, "landmarks": [list(p) for p in self.landmarks]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Detection:
        return cls(
            box=_floats(data["box"]),  # type: ignore[arg-type]
            score=float(data["score"]),
            landmarks=tuple(_floats(p) for p in data["landmarks"]),  # type: ignore[misc]
        )


@dataclass(frozen=True, slots=True)
class Prediction:
    """One task's answer: the top ``label``, its ``confidence`` and ``probs`` over all labels."""

    label: str
    confidence: float
    probs: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "probs": dict(self.probs)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Prediction:
        return cls(
            label=str(data["label"]),
            confidence=float(data["confidence"]),
            probs={k: float(v) for k, v in data["probs"].items()},
        )

    @classmethod
    def from_probs(cls, labels: tuple[str, ...], probs: Any) -> Prediction:
        """Build a prediction from a probability vector ordered like ``labels``."""
        values = [float(p) for p in probs]
        best = max(range(len(values)), key=values.__getitem__)
        return cls(label=labels[best], confidence=values[best], probs=dict(zip(labels, values, strict=True)))


@dataclass(frozen=True, slots=True)
class FaceResult:
    """One face of a frame with its predictions.

    ``attributes`` holds every task's prediction by name (the standard three and any extra
    task a model carries); ``age``, ``gender`` and ``emotion`` are typed shortcuts.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]
    attributes: Mapping[str, Prediction]
    track_id: int | None = None

    @property
    def age(self) -> Prediction | None:
        return self.attributes.get("age")

    @property
    def gender(self) -> Prediction | None:
        return self.attributes.get("gender")

    @property
    def emotion(self) -> Prediction | None:
        return self.attributes.get("emotion")

    @property
    def detection(self) -> Detection:
        return Detection(box=self.box, score=self.score, landmarks=self.landmarks)

    def to_json(self) -> dict[str, Any]:
        return {
            "box": list(self.box),
            "score": self.score,
            "landmarks": [list(p) for p in self.landmarks],
            "track_id": self.track_id,
            "attributes": {k: v.to_json() for k, v in self.attributes.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaceResult:
        return cls(
            box=_floats(data["box"]),  # type: ignore[arg-type]
            score=float(data["score"]),
            landmarks=tuple(_floats(p) for p in data["landmarks"]),  # type: ignore[misc]
            attributes={k: Prediction.from_json(v) for k, v in data["attributes"].items()},
            track_id=data.get("track_id"),
        )


@dataclass(frozen=True, slots=True)
class FrameResult:
    """Everything found in one frame.

    Attributes:
        index: Frame index within its stream (0 for a single image).
        timestamp: Seconds since the epoch when the frame was captured or analysed.
        faces: One :class:`FaceResult` per detected face.
        timings: Milliseconds per stage (``decode``, ``detect``, ``align``, ``infer``, ``post``).
        source: Which source the frame came from, when several are read at once.
    """

    index: int
    timestamp: float
    faces: tuple[FaceResult, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "timestamp": self.timestamp,
            "source": self.source,
            "timings": dict(self.timings),
            "faces": [f.to_json() for f in self.faces],
        }

    def dumps(self) -> str:
        """One line of JSON."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FrameResult:
        return cls(
            index=int(data["index"]),
            timestamp=float(data["timestamp"]),
            faces=tuple(FaceResult.from_json(f) for f in data["faces"]),
            timings={k: float(v) for k, v in data.get("timings", {}).items()},
            source=data.get("source"),
        )
