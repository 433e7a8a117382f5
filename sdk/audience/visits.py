"""One person's visit: time in view, attention, estimates averaged once each, emotions while looking."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..results import FaceResult
from .records import SCHEMA_VERSION, iso_utc

__all__ = ["Visit", "VisitState", "attributes_agree"]

_SAME_ESTIMATE_S = 1e-3
"""Two estimates whose source times (``timestamp - estimate_age_s``) differ by less are one."""


@dataclass(frozen=True, slots=True)
class Visit:
    """A visit as it stands: what the event callbacks receive and per-visit records hold.

    Attributes:
        visit_id: A number unique within this process's run (not an identity: a person who
            comes back is a new visit).
        source: The stream (``FrameResult.source``).
        first_seen: First frame time, seconds since the epoch.
        last_seen: Last frame time the person was in view.
        dwell_s: ``last_seen - first_seen``.
        attention_s: Time spent looking.
        time_to_first_look_s: Seconds from arrival to the first look (``None``: never looked).
        looking: Looking in the last frame it was seen.
        looking_for_s: Length of the current look (0 when not looking).
        age: Age-group posterior averaged over the visit's distinct estimates (empty before any).
        gender: Gender posterior, likewise.
        emotion_shares: Share of the looking time with each top emotion.
        estimates: Distinct estimates averaged so far.
        track_ids: Tracker ids joined into this visit (several when a broken track was rejoined).
    """

    visit_id: int
    source: str | None
    first_seen: float
    last_seen: float
    dwell_s: float
    attention_s: float
    time_to_first_look_s: float | None
    looking: bool
    looking_for_s: float
    age: Mapping[str, float]
    gender: Mapping[str, float]
    emotion_shares: Mapping[str, float]
    estimates: int
    track_ids: tuple[int, ...]

    @property
    def age_group(self) -> str | None:
        """The most probable age group, or ``None`` before any estimate."""
        return max(self.age, key=self.age.__getitem__) if self.age else None

    @property
    def gender_label(self) -> str | None:
        """The most probable gender, or ``None`` before any estimate."""
        return max(self.gender, key=self.gender.__getitem__) if self.gender else None

    def to_json(self) -> dict[str, Any]:
        """The per-visit record (``kind`` ``"visit"``): no track ids, boxes or landmarks."""
        return {
            "kind": "visit",
            "schema_version": SCHEMA_VERSION,
            "source": self.source,
            "start": iso_utc(self.first_seen),
            "end": iso_utc(self.last_seen),
            "dwell_s": self.dwell_s,
            "attention_s": self.attention_s,
            "time_to_first_look_s": self.time_to_first_look_s,
            "age": dict(self.age),
            "gender": dict(self.gender),
            "emotion_shares": dict(self.emotion_shares),
            "estimates": self.estimates,
        }


def _shares(times: Mapping[str, float]) -> dict[str, float]:
    total = sum(times.values())
    return {k: v / total for k, v in sorted(times.items())} if total > 0 else {}


def _normalised(sums: Mapping[str, float], weight: float) -> dict[str, float]:
    return {k: v / weight for k, v in sums.items()} if weight > 0 else {}


def attributes_agree(visit: VisitState, face: FaceResult) -> bool:
    """Whether a face's estimate could be the visit's person: same top gender, age groups at most
    one apart. A side with no estimate agrees (nothing contradicts)."""
    if not face.estimated or visit.weight <= 0:
        return True
    gender = face.gender
    if gender is not None and visit.gender_sums and gender.label != visit.top("gender"):
        return False
    age = face.age
    if age is not None and visit.age_sums:
        order = list(age.probs)
        mine = visit.top("age")
        if mine in order and age.label in order and abs(order.index(mine) - order.index(age.label)) > 1:
            return False
    return True


@dataclass(eq=False, slots=True)
class VisitState:
    """The mutable state of one open visit (owned by :class:`facesdk.audience.Audience`)."""

    visit_id: int
    source: str | None
    first_seen: float
    last_seen: float
    box: tuple[float, float, float, float]
    track_ids: list[int]
    attention_s: float = 0.0
    first_look: float | None = None
    looking: bool = False
    looking_since: float | None = None
    look_reported: bool = False
    emotion: str | None = None
    estimate_time: float | None = None
    weight: float = 0.0
    estimates: int = 0
    age_sums: dict[str, float] = field(default_factory=dict)
    gender_sums: dict[str, float] = field(default_factory=dict)
    emotion_time: dict[str, float] = field(default_factory=dict)

    def top(self, task: str) -> str | None:
        sums = self.age_sums if task == "age" else self.gender_sums
        return max(sums, key=sums.__getitem__) if sums else None

    def add_estimate(self, face: FaceResult, timestamp: float) -> bool:
        """Average the face's estimate in once per distinct estimate; return whether it was new.

        An estimate is known by its source time ``timestamp - estimate_age_s``: it repeats over
        frames with the same source time; weighted by the face's quality score (1 without one).
        """
        if not face.estimated:
            return False
        made = timestamp - face.estimate_age_s
        if self.estimate_time is not None and abs(made - self.estimate_time) < _SAME_ESTIMATE_S:
            return False
        self.estimate_time = made
        weight = 1.0 if face.quality is None else float(face.quality.score)
        if not math.isfinite(weight) or weight <= 0.0:
            return False
        for task, sums in (("age", self.age_sums), ("gender", self.gender_sums)):
            prediction = face.attributes.get(task)
            if prediction is not None:
                for label, p in prediction.probs.items():
                    sums[label] = sums.get(label, 0.0) + weight * float(p)
        self.weight += weight
        self.estimates += 1
        return True

    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2.0, y + h / 2.0

    def snapshot(self, now: float | None = None) -> Visit:
        """The visit as it stands at ``now`` (default: its last frame)."""
        now = self.last_seen if now is None else now
        looking_for = now - self.looking_since if self.looking and self.looking_since is not None else 0.0
        return Visit(
            visit_id=self.visit_id,
            source=self.source,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            dwell_s=self.last_seen - self.first_seen,
            attention_s=self.attention_s,
            time_to_first_look_s=None if self.first_look is None else self.first_look - self.first_seen,
            looking=self.looking,
            looking_for_s=max(0.0, looking_for),
            age=_normalised(self.age_sums, self.weight),
            gender=_normalised(self.gender_sums, self.weight),
            emotion_shares=_shares(self.emotion_time),
            estimates=self.estimates,
            track_ids=tuple(self.track_ids),
        )
