"""Typed, frozen results: Detection -> FaceResult -> FrameResult, each serialisable to JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faces.pose import HeadPose

__all__ = ["AGE_BIN_YEARS", "Detection", "Prediction", "Quality", "FaceResult", "FrameResult", "expected_age"]

AGE_BIN_YEARS: dict[str, float] = {
    "0-2": 1.0,
    "3-9": 6.0,
    "10-19": 14.5,
    "20-29": 24.5,
    "30-39": 34.5,
    "40-49": 44.5,
    "50-59": 54.5,
    "60-69": 64.5,
    "70+": 75.0,
}
"""Years each FairFace age group stands for in :func:`expected_age`: the bin's midpoint
(``0-2`` -> 1.0, ``20-29`` -> 24.5); the open ``70+`` bin is capped at 75."""


def expected_age(age: Prediction | None) -> float | None:
    """Expected age in years from the age-group probabilities, or ``None``.

    ``sum(p(bin) * midpoint(bin))`` over :data:`AGE_BIN_YEARS`; ``None`` when there is no
    age prediction or its labels are not the FaceResult age groups.
    """
    if age is None or not age.probs or any(k not in AGE_BIN_YEARS for k in age.probs):
        return None
    total = sum(age.probs.values())
    if total <= 0:
        return None
    return sum(p * AGE_BIN_YEARS[k] for k, p in age.probs.items()) / total


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
class Quality:
    """How well a frame shows a face, each component in [0, 1] (1 is best).

    Attributes:
        score: The combined score (see ``docs/sdk.md``, "Face quality").
        size: From the face's size in pixels.
        sharpness: From the variance of the Laplacian of the aligned crop.
        pose: From the yaw estimated from the five landmarks (frontal is 1).
        detector: The detector's own score.
    """

    score: float
    size: float
    sharpness: float
    pose: float
    detector: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Quality:
        return cls(**{k: float(data[k]) for k in ("score", "size", "sharpness", "pose", "detector")})


@dataclass(frozen=True, slots=True)
class FaceResult:
    """One face of a frame with its predictions.

    ``attributes`` holds every task's prediction by name (the standard three and any extra
    task a model carries); ``age``, ``gender`` and ``emotion`` are typed shortcuts. It is
    empty when the face was not estimated (e.g. skipped for low quality with no earlier
    estimate of its track).

    In streams, a tracked face's attributes may come from an earlier frame of its track:
    ``inferred`` says whether this frame ran the backbone on this face, and
    ``estimate_age_s`` how many seconds old the estimate is (0.0 when inferred now).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]
    attributes: Mapping[str, Prediction]
    track_id: int | None = None
    inferred: bool = True
    estimate_age_s: float = 0.0
    quality: Quality | None = None

    @property
    def estimated(self) -> bool:
        """Whether the face carries attributes at all."""
        return bool(self.attributes)

    @property
    def age_years(self) -> float | None:
        """Expected age in years from the age-group probabilities (:func:`expected_age`)."""
        return expected_age(self.attributes.get("age"))

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

    @property
    def pose(self) -> HeadPose | None:
        """Head pose from the five landmarks (:func:`facesdk.faces.pose.head_pose`), or ``None``."""
        from .faces.pose import head_pose  # results is imported by faces: import on first use

        return head_pose(self.landmarks)

    def to_json(self) -> dict[str, Any]:
        return {
            "box": list(self.box),
            "score": self.score,
            "landmarks": [list(p) for p in self.landmarks],
            "track_id": self.track_id,
            "inferred": self.inferred,
            "estimate_age_s": self.estimate_age_s,
            "quality": None if self.quality is None else self.quality.to_json(),
            "age_years": self.age_years,
            "pose": None if (pose := self.pose) is None else pose.to_json(),
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
            inferred=bool(data.get("inferred", True)),
            estimate_age_s=float(data.get("estimate_age_s", 0.0)),
            quality=None if data.get("quality") is None else Quality.from_json(data["quality"]),
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
