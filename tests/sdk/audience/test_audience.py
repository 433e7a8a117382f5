"""Visits, attention and aggregates on scripted audiences (known entries, looks and exits)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from facesdk.audience import Audience, AudienceConfig, LookingConfig, Visit, read_schedule, suppress
from facesdk.audience.simulate import START, ScriptedPerson, scripted_frames, simulate
from facesdk.errors import ConfigError
from facesdk.results import FrameResult, Prediction, Quality
from facesdk.tasks import AGE, GENDER


class Collect:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.closed = False

    def publish(self, record: Mapping[str, Any]) -> None:
        self.records.append(json.loads(json.dumps(record)))

    def close(self) -> None:
        self.closed = True


def run(people, duration_s: float, **kwargs: Any) -> tuple[list[Visit], Collect]:
    sink, left = Collect(), []
    audience = Audience(sinks=[sink], on_leave=left.append, **kwargs)
    for _ in audience.consume(scripted_frames(people, duration_s)):
        pass
    audience.close()
    return sorted(left, key=lambda v: v.first_seen), sink


SCRIPT = [  # three people: one looks twice, one never looks, one looks and turns away
    ScriptedPerson(enter=2.0, leave=14.0, looks=((4.0, 7.0), (9.0, 10.5)), age="20-29", gender="female"),
    ScriptedPerson(enter=5.0, leave=9.0, age="40-49", gender="male", position=(300.0, 300.0)),
    ScriptedPerson(
        enter=20.0, leave=31.0, looks=((22.0, 24.5),), age="30-39", gender="male", position=(900, 400)
    ),
]


def test_scripted_visits_give_the_scripted_counts_dwell_and_attention() -> None:
    left, sink = run(SCRIPT, 40.0)
    assert len(left) == 3
    for visit, person in zip(left, SCRIPT, strict=True):
        looked = sum(b - a for a, b in person.looks)
        assert visit.dwell_s == pytest.approx(person.leave - person.enter, abs=0.2)
        assert visit.attention_s == pytest.approx(looked, abs=0.3)
        if person.looks:
            assert visit.time_to_first_look_s == pytest.approx(person.looks[0][0] - person.enter, abs=0.2)
        else:
            assert visit.time_to_first_look_s is None
        assert visit.gender_label == person.gender and visit.age_group == person.age
    (window,) = [r for r in sink.records if r["kind"] == "window"]  # k = 3: a cell of two is withheld
    assert window["passers_by"] == 3 and window["dwell_s"]["mean"] == pytest.approx(
        (12 + 4 + 11) / 3, abs=0.2
    )
    assert window["viewers"] is None and window["attention_s"] is None
    assert window["viewers_by_age_gender"] == {"20-29": {"female": None}, "30-39": {"male": None}}
    assert window["attention_histogram"] == {"0": None, "0-1": 0, "1-2": 0, "2-5": None, "5-10": 0, "10+": 0}
    assert {"viewers", "attention_s", "viewers_by_age_gender.20-29.female", "attention_histogram.2-5"} <= set(
        window["suppressed"]
    )
    _, sink = run(SCRIPT, 40.0, config=AudienceConfig(k=1))
    (window,) = [r for r in sink.records if r["kind"] == "window"]
    assert (window["passers_by"], window["viewers"], window["suppressed"]) == (3, 2, [])
    assert window["viewers_by_age_gender"] == {"20-29": {"female": 1}, "30-39": {"male": 1}}
    assert window["attention_s"]["mean"] == pytest.approx((4.5 + 2.5) / 2, abs=0.3)
    assert window["emotion_shares"] == {"happy": 1.0} and window["emotion_people"] == 2


def test_a_track_broken_inside_the_gap_stays_one_visit_and_a_different_person_does_not() -> None:
    person = ScriptedPerson(enter=1.0, leave=10.0, looks=((2.0, 8.0),), breaks=((4.0, 4.7),))
    left, _ = run([person], 15.0)
    (visit,) = left
    assert len(visit.track_ids) == 2 and visit.dwell_s == pytest.approx(9.0, abs=0.2)
    assert visit.attention_s == pytest.approx(6.0, abs=0.3)
    late = replace(person, breaks=((4.0, 5.5),))  # past the 1 s gap: two visits
    assert len(run([late], 15.0)[0]) == 2
    # someone else (other gender, other age) takes the spot inside the gap: two visits
    first = replace(person, leave=4.0, breaks=())
    other = replace(person, enter=4.5, gender="male", age="60-69", breaks=())
    assert len(run([first, other], 15.0)[0]) == 2
    assert len(run([first, replace(other, gender="female", age="20-29")], 15.0)[0]) == 1
    assert len(run([first, replace(other, gender="male", age="20-29")], 15.0)[0]) == 2
    assert len(run([first, replace(other, gender="female", age="40-49")], 15.0)[0]) == 2


def test_a_visit_across_two_windows_counts_in_each_with_its_time_split() -> None:
    # the track breaks across the minute: the rejoined interval 59.5-60.3 s is split at 60 s
    person = ScriptedPerson(enter=50.0, leave=70.0, looks=((55.0, 65.0),), breaks=((59.6, 60.3),))
    _, sink = run([person], 90.0, config=AudienceConfig(k=1))
    windows = [r for r in sink.records if r["kind"] == "window"]
    assert [w["passers_by"] for w in windows] == [1, 1]
    assert [w["dwell_s"]["mean"] for w in windows] == pytest.approx([10.0, 10.0], abs=0.2)
    assert [w["attention_s"]["mean"] for w in windows] == pytest.approx([5.0, 5.0], abs=0.3)
    assert [w["viewers"] for w in windows] == [1, 1]


def test_content_items_get_their_share_of_a_visit_from_switches_and_from_a_schedule(tmp_path) -> None:
    person = ScriptedPerson(enter=2.0, leave=12.0, looks=((2.0, 12.0),))
    sink = Collect()
    audience = Audience(config=AudienceConfig(k=1), sinks=[sink])
    for frame in scripted_frames([person], 20.0):
        if frame.index == 0:
            audience.content("ad-1", at=frame.timestamp)
        if frame.index == 50:
            audience.content("ad-2")  # at the frame time seen last: 4.9 s
        audience.update(frame)
    audience.close()
    plays = {r["content"]: r for r in sink.records if r["kind"] == "content"}
    assert plays["ad-1"]["dwell_s"]["mean"] == pytest.approx(2.9, abs=0.2)
    assert plays["ad-2"]["dwell_s"]["mean"] == pytest.approx(7.1, abs=0.2)
    schedule = tmp_path / "schedule.csv"
    schedule.write_text(
        "start,end,content\n2026-11-30T02:00:00+01:00,2026-11-30T02:00:05+01:00,ad-1\n"
        "2026-11-30T01:00:05Z,2026-11-30T01:00:30Z,ad-2\n"
    )
    rows = read_schedule(schedule)
    assert rows[0] == (START, START + 5.0, "ad-1")
    _, sink = run([person], 20.0, config=AudienceConfig(k=1), schedule=rows)
    plays = {r["content"]: r for r in sink.records if r["kind"] == "content"}
    assert plays["ad-1"]["attention_s"]["mean"] == pytest.approx(3.0, abs=0.3)
    assert plays["ad-2"]["attention_s"]["mean"] == pytest.approx(7.0, abs=0.3)
    schedule.write_text("2026-11-30T01:00:00,2026-11-30T01:00:05Z,ad-1\n")
    with pytest.raises(ConfigError, match="no UTC offset"):
        read_schedule(schedule)


def test_each_estimate_counts_once_however_many_frames_repeat_it() -> None:
    def frame(i: float, probs: list[float], age_s: float, quality: float) -> FrameResult:
        (face,) = next(
            iter(scripted_frames([ScriptedPerson(enter=0.0, leave=99.0, looks=((0, 99),))], 0.1))
        ).faces
        attributes = {"gender": Prediction.from_probs(GENDER.labels, probs), "age": face.attributes["age"]}
        face = replace(
            face, attributes=attributes, estimate_age_s=age_s, quality=replace(face.quality, score=quality)
        )
        return FrameResult(index=int(i * 10), timestamp=START + i, faces=(face,))

    left: list[Visit] = []
    audience = Audience(on_leave=left.append)
    audience.update(frame(0.0, [0.9, 0.1], 0.0, 0.5))
    for i in range(1, 30):  # the same estimate repeated 29 times (its source time stays START)
        audience.update(frame(i / 10, [0.9, 0.1], i / 10, 0.9))
    audience.update(frame(3.0, [0.1, 0.9], 0.2, 0.5))  # asynchronous: landed 0.2 s late, not inferred here
    audience.update(frame(3.1, [0.1, 0.9], 0.3, 0.5))
    audience.close()
    (visit,) = left
    assert visit.estimates == 2 and visit.gender["male"] == pytest.approx(0.5)


def test_robot_callbacks_enter_look_after_one_second_and_leave() -> None:
    events: list[tuple[str, float, float]] = []
    person = ScriptedPerson(enter=1.0, leave=8.0, looks=((2.0, 2.5), (4.0, 6.0)))
    audience = Audience(
        config=AudienceConfig(look_after_s=1.0),
        on_enter=lambda v: events.append(("enter", v.last_seen - START, v.looking_for_s)),
        on_look=lambda v: events.append(("look", v.last_seen - START, v.looking_for_s)),
        on_leave=lambda v: events.append(("leave", v.last_seen - START, v.attention_s)),
    )
    for _ in audience.consume(scripted_frames([person], 12.0)):
        pass
    assert [e[0] for e in events] == ["enter", "look", "leave"]  # the half-second look is not reported
    assert events[1][1] == pytest.approx(5.0, abs=0.15) and events[1][2] >= 1.0
    assert events[2][2] == pytest.approx(2.5, abs=0.3)


def test_looking_follows_the_cone_and_its_offset() -> None:
    from facesdk.audience import HeadPose, is_looking

    assert is_looking(HeadPose(29, -19, 0)) and not is_looking(HeadPose(31, 0, 0))
    assert not is_looking(HeadPose(0, 21, 0)) and not is_looking(None)
    above = LookingConfig(pitch_offset=-15.0)  # a camera above the screen sees viewers look down
    assert is_looking(HeadPose(0, -30, 0), above) and not is_looking(HeadPose(0, 10, 0), above)
    with pytest.raises(ConfigError, match="max_yaw"):
        LookingConfig(max_yaw=0)
    with pytest.raises(ConfigError, match="merge_gap_s"):
        AudienceConfig(merge_gap_s=3.0)


def test_sources_keep_their_own_visits_and_records() -> None:
    person = ScriptedPerson(enter=1.0, leave=5.0, looks=((1.0, 3.0),))
    sink = Collect()
    audience = Audience(sinks=[sink], config=AudienceConfig(k=1))
    for a, b in zip(
        scripted_frames([person], 10.0, source="door"),
        scripted_frames([person], 10.0, source="hall"),
        strict=True,
    ):
        audience.update(a)
        audience.update(b)
        if a.index == 20:
            assert audience.snapshot()["in_view"] == {"door": 1, "hall": 1, "total": 2}
    audience.close()
    windows = [r for r in sink.records if r["kind"] == "window"]
    assert sorted(w["source"] for w in windows) == ["door", "hall"]
    assert all(w["passers_by"] == 1 for w in windows) and sink.closed


def test_an_hour_of_scripted_visits_closes_every_visit() -> None:
    sink, left = Collect(), []
    audience = Audience(sinks=[sink], on_leave=left.append, per_visit=True)
    done = simulate(audience, duration_s=600.0, per_minute=6.0, fps=2.0, seed=1)
    audience.close()
    assert done["frames"] == 1200 and len(left) == done["people"] > 30
    assert not audience.visits()
    assert sum(r["kind"] == "visit" for r in sink.records) == len(left)
    assert sum(r["kind"] == "window" for r in sink.records) == 10


def test_suppress_needs_an_aggregate_and_k_at_least_one() -> None:
    with pytest.raises(ConfigError, match="k >= 1"):
        suppress({"kind": "window"}, 0)
    with pytest.raises(ConfigError, match="aggregate"):
        suppress({"kind": "visit"})


def test_age_labels_stay_the_standard_groups() -> None:
    assert AGE.labels[3] == "20-29" and Quality.__slots__
