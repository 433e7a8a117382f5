"""Privacy promises (nothing per face leaves, small cells withheld) and the JSON Lines sink."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from facesdk.audience import Audience, AudienceConfig, suppress
from facesdk.audience.simulate import ScriptedPerson, scripted_frames, simulate
from facesdk.audience.sinks import JsonLinesSink, Sink


def _numbers(value: object) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [float(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_no_record_holds_a_landmark_box_or_array_and_visits_stay_in_by_default(tmp_path: Path) -> None:
    people = [
        ScriptedPerson(enter=1.0 + i, leave=20.0 + i, looks=((3.0, 9.0),), position=(333.3 + 97 * i, 271.7))
        for i in range(4)
    ]
    frames = list(scripted_frames(people, 40.0))
    coordinates = {
        round(c, 3) for f in frames for face in f.faces for p in (*face.landmarks, face.box) for c in p
    }
    sink = JsonLinesSink(tmp_path)
    assert isinstance(sink, Sink)
    with Audience(sinks=[sink]) as audience:
        for frame in frames:
            audience.update(frame)
    text = "".join(p.read_text() for p in sink.written)
    records = [json.loads(line) for line in text.splitlines()]
    assert {r["kind"] for r in records} == {"window"}  # per-visit records are off by default
    for record in records:
        assert not {"landmarks", "box", "pose", "track_id", "embedding"} & set(json.dumps(record).split('"'))
        assert not {round(n, 3) for n in _numbers(record)} & coordinates


def test_a_cell_of_two_people_is_withheld_and_one_of_three_is_not() -> None:
    record = {
        "kind": "window",
        "passers_by": 3,
        "viewers": 2,
        "dwell_s": {"mean": 4.0, "median": 3.0},
        "attention_s": {"mean": 2.0, "median": 2.0},
        "attention_histogram": {"0": 1, "2-5": 2},
        "viewers_by_age_gender": {"20-29": {"female": 2, "male": 0}, "30-39": {"male": 3}},
        "emotion_shares": {"happy": 1.0},
        "emotion_people": 2,
    }
    out = suppress(record)
    assert out["passers_by"] == 3 and out["dwell_s"] == {"mean": 4.0, "median": 3.0}
    assert out["viewers"] is None and out["attention_s"] is None and out["emotion_shares"] is None
    assert out["viewers_by_age_gender"] == {"20-29": {"female": None, "male": 0}, "30-39": {"male": 3}}
    assert out["attention_histogram"] == {"0": None, "2-5": None}
    assert out["suppressed"] == [
        "attention_histogram.0",
        "attention_histogram.2-5",
        "attention_s",
        "emotion_people",
        "emotion_shares",
        "viewers",
        "viewers_by_age_gender.20-29.female",
    ]
    assert suppress(out) == out and record["viewers"] == 2  # idempotent, and the input is left alone


def test_jsonl_files_rotate_and_appear_only_when_complete(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path, max_records=2)
    sink.publish({"kind": "window", "n": 1})
    assert not list(tmp_path.glob("*.jsonl")) and len(list(tmp_path.glob(".audience-*.tmp"))) == 1
    sink.publish({"kind": "content", "n": 2})
    sink.publish({"kind": "window", "n": 3})
    assert len(sink.written) == 1 and not list(tmp_path.glob(".*.tmp"))
    sink.publish({"kind": "window", "n": 4})
    sink.close()
    assert [[json.loads(x)["n"] for x in p.read_text().splitlines()] for p in sink.written] == [
        [1, 2, 3],
        [4],
    ]
    sized = JsonLinesSink(tmp_path / "sized", max_bytes=60)
    for n in range(5):
        sized.publish({"kind": "window", "n": n, "pad": "x" * 20})
    sized.close()
    assert len(sized.written) == 3


def test_a_file_left_by_a_killed_run_is_completed_without_its_cut_line(tmp_path: Path) -> None:
    (tmp_path / ".audience-20261130T010000.jsonl.abc123.tmp").write_text('{"kind":"window"}\n{"kind":"wi')
    JsonLinesSink(tmp_path).close()
    (done,) = tmp_path.glob("*.jsonl")
    assert done.name == "audience-20261130T010000.jsonl" and done.read_text() == '{"kind":"window"}\n'
    assert not list(tmp_path.glob(".*"))


def test_simulate_then_report_writes_self_contained_html(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "facesdk", "audience"]
    sim = subprocess.run(
        [*run, "simulate", "--minutes", "5", "--per-minute", "20", "--out", str(tmp_path / "rec")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sim.returncode == 0, sim.stderr
    rep = subprocess.run(
        [*run, "report", str(tmp_path / "rec"), "--out", str(tmp_path / "report")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rep.returncode == 0, rep.stderr
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("<svg") == 3 and "<table>" in page and "<rect" in page
    assert "src=" not in page and "href=" not in page and "<script" not in page  # no external assets
    again = subprocess.run(
        [*run, "report", str(tmp_path / "rec"), "--out", str(tmp_path / "report")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "--force" in again.stderr


def test_snapshot_lists_the_last_hours_windows_suppressed() -> None:
    audience = Audience(config=AudienceConfig(window_s=60.0))
    simulate(audience, duration_s=5400.0, per_minute=1.0, fps=0.5, seed=2)
    snap = audience.snapshot()
    assert len(snap["windows"]) == 60 and all("suppressed" in w for w in snap["windows"])
    assert set(snap) == {"time", "in_view", "looking", "content", "windows", "k"}
    with pytest.raises(Exception, match="after close"):
        audience.close()
        audience.update(next(iter(scripted_frames([], 1.0))))
