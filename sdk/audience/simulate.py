"""Scripted audiences: stream results of people who enter, look, turn away and leave on cue.

For tests, replays and the audience benchmarks: each scripted person becomes a tracked face whose
five landmarks are :data:`facesdk.faces.pose.FACE_MODEL_3D` projected at the scripted head pose
(frontal while looking, turned away otherwise), with age, gender and emotion estimates that
refresh every ``estimate_every_s`` like a stream engine's.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..faces.pose import HeadPose, project_landmarks
from ..results import FaceResult, FrameResult, Prediction, Quality
from ..tasks import AGE, EMOTION, GENDER

__all__ = ["ScriptedPerson", "scripted_frames", "random_people", "simulate"]

START = 1_796_000_400.0
"""Default start of a scripted run: 2026-11-30 01:00:00 UTC (a whole minute, so windows align)."""


@dataclass(frozen=True, slots=True)
class ScriptedPerson:
    """One person's script; times in seconds from the run's start.

    Attributes:
        enter: First frame in view.
        leave: In view until (not including) this time.
        looks: ``(from, to)`` intervals looking at the camera; turned away (``away_yaw``) otherwise.
        age, gender, emotion: The labels their estimates favour (probability 0.8).
        position: Face centre in the frame, pixels.
        size: Face box side, pixels.
        breaks: ``(from, to)`` intervals the tracker loses them; a new track id follows each.
        away_yaw: Head yaw while not looking.
        estimate_every_s: A new estimate lands this often (the same one repeats in between).
    """

    enter: float
    leave: float
    looks: tuple[tuple[float, float], ...] = ()
    age: str = "20-29"
    gender: str = "female"
    emotion: str = "happy"
    position: tuple[float, float] = (640.0, 360.0)
    size: float = 120.0
    breaks: tuple[tuple[float, float], ...] = ()
    away_yaw: float = 60.0
    estimate_every_s: float = 0.5

    def visible(self, t: float) -> bool:
        return self.enter <= t < self.leave and not any(a <= t < b for a, b in self.breaks)

    def looking(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.looks)


def _prediction(labels: tuple[str, ...], label: str) -> Prediction:
    rest = 0.2 / (len(labels) - 1)
    return Prediction.from_probs(labels, [0.8 if name == label else rest for name in labels])


def _face(person: ScriptedPerson, number: int, t: float) -> FaceResult:
    pose = HeadPose(0.0 if person.looking(t) else person.away_yaw, 0.0, 0.0)
    marks = project_landmarks(pose, person.position, inter_ocular=0.4 * person.size)
    x, y = person.position
    box = (x - person.size / 2, y - 0.6 * person.size, person.size, person.size * 1.2)
    broken = sum(1 for _, b in person.breaks if b <= t)
    age = math.fmod(t - person.enter, person.estimate_every_s)
    return FaceResult(
        box=box,
        score=0.95,
        landmarks=tuple((float(px), float(py)) for px, py in marks),
        attributes={
            "age": _prediction(AGE.labels, person.age),
            "gender": _prediction(GENDER.labels, person.gender),
            "emotion": _prediction(EMOTION.labels, person.emotion),
        },
        track_id=1000 * number + broken,
        inferred=age < 1e-9,
        estimate_age_s=age,
        quality=Quality(score=0.8, size=1.0, sharpness=0.8, pose=1.0, detector=0.95),
    )


def scripted_frames(
    people: Sequence[ScriptedPerson],
    duration_s: float,
    fps: float = 10.0,
    start: float = START,
    source: str | None = None,
) -> Iterator[FrameResult]:
    """Frames at ``fps`` from ``start`` for ``duration_s`` seconds with the scripted people in view."""
    for index in range(int(round(duration_s * fps))):
        t = index / fps
        faces = tuple(_face(p, n, t) for n, p in enumerate(people) if p.visible(t))
        yield FrameResult(index=index, timestamp=start + t, faces=faces, source=source)


def random_people(duration_s: float, per_minute: float = 6.0, seed: int = 0) -> Iterator[ScriptedPerson]:
    """People arriving at random (a Poisson stream), each staying 2-30 s, half of them looking a while."""
    rng = random.Random(seed)
    t = 0.0
    while True:
        t += rng.expovariate(per_minute / 60.0)
        if t >= duration_s:
            return
        stay = rng.uniform(2.0, 30.0)
        looks: tuple[tuple[float, float], ...] = ()
        if rng.random() < 0.5:
            a = t + rng.uniform(0.0, stay / 2)
            looks = ((a, a + rng.uniform(0.3, stay / 2)),)
        yield ScriptedPerson(
            enter=t,
            leave=t + stay,
            looks=looks,
            age=rng.choice(AGE.labels[3:7]),
            gender=rng.choice(GENDER.labels),
            emotion=rng.choice(EMOTION.labels),
            position=(rng.uniform(100, 1180), rng.uniform(100, 620)),
        )


def simulate(
    audience: object, duration_s: float = 3600.0, per_minute: float = 6.0, fps: float = 5.0, seed: int = 0
) -> dict[str, int]:
    """Drive ``audience`` (anything with ``update(FrameResult)``) with an accelerated scripted run.

    Frames are generated on the fly (no sleeping, nothing kept), so an hour of visits runs in
    seconds and memory holds only the people in view. Returns ``{"frames": ..., "people": ...}``.
    """
    arrivals = random_people(duration_s, per_minute, seed)
    pending = next(arrivals, None)
    active: list[tuple[float, int, ScriptedPerson]] = []
    people = frames = 0
    for index in range(int(round(duration_s * fps))):
        t = index / fps
        while pending is not None and pending.enter <= t:
            heapq.heappush(active, (pending.leave, people, pending))
            people += 1
            pending = next(arrivals, None)
        while active and active[0][0] <= t:
            heapq.heappop(active)
        faces = tuple(_face(p, n, t) for _, n, p in active if p.visible(t))
        audience.update(FrameResult(index=index, timestamp=START + t, faces=faces))  # type: ignore[attr-defined]
        frames += 1
    return {"frames": frames, "people": people}
