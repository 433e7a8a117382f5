"""``facesdk audience --source ... --model ...`` end to end: a video of the astronaut, the tiny export,
every sink (JSON Lines, a real Mosquitto, Prometheus), the dashboard, and a SIGTERM that must
flush the last window."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.sdk.audience.conftest import Subscriber, free_port

pytest.importorskip("prometheus_client", reason="the live command's sinks need the [audience] extra")
pytest.importorskip("paho.mqtt.client", reason="the live command's sinks need the [audience] extra")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory: pytest.TempPathFactory, astronaut_bgr: np.ndarray) -> Path:
    """900 frames (MJPG .avi, 320x320) of the astronaut panning slowly: one face throughout."""
    path = tmp_path_factory.mktemp("video") / "astronaut.avi"
    photo = cv2.resize(astronaut_bgr, (320, 320))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 320))
    assert writer.isOpened()
    for i in range(900):
        writer.write(np.roll(photo, int(4 * np.sin(i / 20)), axis=1))
    writer.release()
    return path


def command(video: Path, model: Path, detector: Path, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "facesdk", "audience", "--source", str(video), "--model", str(model),
        "--detector", str(detector), *options,
    ]  # fmt: skip


def start(cmd: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    log = open(tmp_path / "stderr.log", "w")  # noqa: SIM115 - the process owns it until it exits
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)


def wait_until(proc: subprocess.Popen[str], tmp_path: Path, probe: Callable[[], Any], what: str) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with the command's log if it exits first."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the command exited ({proc.returncode}) before {what}:\n{log_of(tmp_path)}")
        try:
            found = probe()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"gave up waiting for {what}:\n{log_of(tmp_path)}")


def log_of(tmp_path: Path) -> str:
    return (tmp_path / "stderr.log").read_text()[-4000:]


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def records(folder: Path) -> list[dict[str, Any]]:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "a file was left unfinished"
    files = sorted(folder.glob("audience-*.jsonl"))
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def stop(proc: subprocess.Popen[str], tmp_path: Path) -> str:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log_of(tmp_path)
    return log_of(tmp_path)


def test_live_command_publishes_to_every_sink_and_flushes_the_last_window_on_sigterm(
    tmp_path: Path, astronaut_video: Path, tiny_export: Path, yunet_path: Path, broker: Any
) -> None:
    subscriber = Subscriber(broker.port)
    metrics, serve, out = free_port(), free_port(), tmp_path / "records"
    options = (
        "--out", str(out), "--mqtt", f"127.0.0.1:{broker.port}", "--metrics", f"127.0.0.1:{metrics}",
        "--live-metrics", "--serve", f"127.0.0.1:{serve}", "--window-s", "1", "--k", "1",
    )  # fmt: skip
    proc = start(command(astronaut_video, tiny_export, yunet_path, *options), tmp_path)
    try:
        window = frozenset({("kind", "window"), ("source", str(astronaut_video))})
        published = ("facesdk_audience_records_total", window)
        samples = wait_until(
            proc, tmp_path, lambda: (s := scrape(metrics)).get(published, 0) >= 2 and s, "two closed windows"
        )
        passers = samples[("facesdk_audience_passers_by", window | {("content", "")})]
        assert passers == 1  # the astronaut, in every window (k = 1 publishes a single person)
        assert samples[("facesdk_audience_in_view", frozenset({("source", str(astronaut_video))}))] in (0, 1)
        assert samples[("facesdk_audience_mqtt_dropped_total", frozenset())] == 0
        snapshot = wait_until(
            proc,
            tmp_path,
            lambda: (s := get_json(f"http://127.0.0.1:{serve}/api/snapshot")) and s,
            "the page",
        )
        assert {"in_view", "looking", "windows", "k"} <= set(snapshot) and snapshot["k"] == 1
        log = stop(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "SIGTERM" in log, log
    windows = [r for r in records(out) if r["kind"] == "window"]
    assert len(windows) >= 2 and all(r["passers_by"] == 1 for r in windows), windows
    assert windows[-1]["partial"] and not any(r["partial"] for r in windows[:-1])  # the last, flushed

    def mqtt_windows() -> list[tuple[str, str]]:
        unique = {m["message_id"]: m for m in subscriber.received() if m["kind"] == "window"}
        return sorted((m["start"], m["end"]) for m in unique.values())

    deadline = time.monotonic() + 20
    while mqtt_windows() != sorted((r["start"], r["end"]) for r in windows) and time.monotonic() < deadline:
        time.sleep(0.1)
    subscriber.close()
    assert mqtt_windows() == sorted((r["start"], r["end"]) for r in windows)  # the same records, each once


def test_default_k_withholds_a_single_person_and_max_frames_stops(
    tmp_path: Path, astronaut_video: Path, tiny_export: Path, yunet_path: Path
) -> None:
    out = tmp_path / "records"
    cmd = command(astronaut_video, tiny_export, yunet_path, "--out", str(out), "--max-frames", "30")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--max-frames" in done.stderr
    windows = [r for r in records(out) if r["kind"] == "window"]
    assert windows and all(r["passers_by"] is None and "passers_by" in r["suppressed"] for r in windows)
    assert windows[-1]["partial"]


def test_preview_serves_the_annotated_frame_on_the_local_page(
    tmp_path: Path, astronaut_video: Path, tiny_export: Path, yunet_path: Path
) -> None:
    serve = free_port()
    cmd = command(astronaut_video, tiny_export, yunet_path, "--serve", f"127.0.0.1:{serve}", "--preview")
    proc = start(cmd, tmp_path)
    try:

        def frame() -> Any:
            with urllib.request.urlopen(f"http://127.0.0.1:{serve}/preview.jpg", timeout=5) as response:
                return cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)

        (image,) = wait_until(proc, tmp_path, lambda: (f := frame()) is not None and (f,), "a preview frame")
        assert image.shape == (320, 320, 3)
        assert get_json(f"http://127.0.0.1:{serve}/api/config")["preview"] is True
        stop(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--preview",), "give --serve"),
        (("--serve", ":8080", "--preview", "--source", "other.avi"), "one camera"),
        (("--serve", "0.0.0.0:8080", "--preview"), "loopback only"),
        (("--live-metrics",), "give --metrics"),
        (("--mqtt", "broker:port"), "port"),
    ],
)
def test_refused_options_say_what_to_change(
    options: tuple[str, ...], message: str, tmp_path: Path, tiny_export: Path
) -> None:
    done = subprocess.run(
        command(tmp_path / "none.avi", tiny_export, tmp_path / "yunet.onnx", *options),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]


def test_a_source_that_cannot_be_read_fails_the_command(
    tmp_path: Path, tiny_export: Path, yunet_path: Path
) -> None:
    out = tmp_path / "records"
    done = subprocess.run(
        command(tmp_path / "missing.avi", tiny_export, yunet_path, "--out", str(out)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "every source failed" in done.stderr, done.stderr[-2000:]
    assert "missing.avi does not exist" in done.stderr


def test_out_refuses_a_folder_with_other_files(tmp_path: Path, tiny_export: Path) -> None:
    out = tmp_path / "records"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    done = subprocess.run(
        command(tmp_path / "none.avi", tiny_export, tmp_path / "yunet.onnx", "--out", str(out)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "did not write (notes.txt)" in done.stderr, done.stderr[-2000:]
    assert (out / "notes.txt").read_text() == "mine"


SIGNAL_CHECK = """
import os, signal, time
from facesdk.audience.live import _Interrupts, _Stop

before = signal.getsignal(signal.SIGTERM)
counted = []
with _Interrupts() as interrupts:
    try:
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler has run by now: it held the stop back
                time.sleep(0.001)
            counted.append("frame")
        raise SystemExit("the deferred SIGTERM was lost")
    except _Stop as stop:
        assert "SIGTERM" in str(stop), stop
    assert counted == ["frame"], counted
    try:  # between frames a signal stops at once
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            time.sleep(0.001)
        counted.append("not reached")
    except _Stop as stop:
        assert "SIGINT" in str(stop), stop
assert counted == ["frame"], counted
assert signal.getsignal(signal.SIGTERM) is before  # the previous handlers are back
print("ok")
"""


def test_a_signal_while_a_frame_is_counted_waits_for_that_frame() -> None:
    # In a fresh interpreter: a signal sent to the test process itself would reach whatever handlers
    # the libraries loaded by earlier tests installed.
    proc = subprocess.run([sys.executable, "-c", SIGNAL_CHECK], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
