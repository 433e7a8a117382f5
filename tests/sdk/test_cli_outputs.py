"""No command destroys a user's file: ``analyze --json`` and ``demo --save`` are staged beside their
output, never replace an input (the detector the lookup found included), and need ``--force``."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.cli import main
from tests.helpers import one_error

DETECTOR = "face_detection_yunet_2026may.onnx"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


@pytest.fixture()
def image(tmp_path: Path, astronaut_bgr: np.ndarray) -> Path:
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), astronaut_bgr)
    return path


@pytest.mark.parametrize("source", ["nosuch.png", "text.mp4"])
def test_a_failed_analyze_leaves_the_old_json(
    tmp_path: Path, tiny_export: Path, yunet_path: Path, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "text.mp4").write_text("not a video")
    out = tmp_path / "prev.jsonl"
    out.write_text("earlier results\n")
    argv = ["analyze", str(tmp_path / source), "--model", str(tiny_export), "--detector", str(yunet_path)]
    assert main([*argv, "--json", str(out), "--force"]) == 2
    one_error(capsys)
    assert out.read_text() == "earlier results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev.jsonl", "text.mp4"]  # no partial file


def test_analyze_json_never_replaces_the_detector_it_found(
    tmp_path: Path,
    image: Path,
    tiny_export: Path,
    yunet_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("FACESDK_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "facesdk" / "models" / DETECTOR
    cached.parent.mkdir(parents=True)
    shutil.copyfile(yunet_path, cached)
    argv = ["analyze", str(image), "--model", str(tiny_export), "--json", str(cached), "--force"]
    assert main(argv) == 2  # no --detector: the lookup found it, and it is an input all the same
    assert "is an input" in one_error(capsys)
    assert _digest(cached) == _digest(yunet_path)


def test_analyze_never_makes_a_url_a_path(
    tmp_path: Path, tiny_export: Path, yunet_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "rtsp://127.0.0.1:1/stream"  # port 1: refused at once
    assert main(["analyze", url, "--model", str(tiny_export), "--detector", str(yunet_path)]) == 2
    line = one_error(capsys)
    assert url in line and "does not exist" not in line


@pytest.mark.parametrize("command", ["analyze", "demo"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_frames_below_one_is_refused(
    tmp_path: Path, tiny_export: Path, command: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = [str(tmp_path / "v.avi")] if command == "analyze" else ["--source", str(tmp_path / "v.avi")]
    with pytest.raises(SystemExit) as exit_:
        main([command, *source, "--model", str(tiny_export), "--max-frames", value])
    assert exit_.value.code == 2
    assert f"--max-frames: expected an integer of at least 1, got {value}" in capsys.readouterr().err


def test_demo_save_never_replaces_its_source_and_needs_force(
    tmp_path: Path,
    tiny_export: Path,
    yunet_path: Path,
    astronaut_video: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "vc.avi"
    shutil.copyfile(astronaut_video, source)
    argv = ["demo", "--source", str(source), "--model", str(tiny_export), "--detector", str(yunet_path)]
    argv += ["--no-window", "--max-frames", "2"]
    assert main([*argv, "--save", str(source), "--force"]) == 2
    assert "is an input" in one_error(capsys)
    assert _digest(source) == _digest(astronaut_video)
    existing = tmp_path / "existing.avi"
    shutil.copyfile(astronaut_video, existing)
    assert main([*argv, "--save", str(existing)]) == 2
    assert "pass --force" in one_error(capsys)
    assert _frames(existing) == 5
    assert main([*argv, "--save", str(existing), "--force"]) == 0
    assert _frames(existing) == 2
    assert not [p for p in tmp_path.iterdir() if ".facesdk-partial-" in p.name]


def test_sigterm_keeps_the_demos_video_so_far(
    tmp_path: Path, tiny_export: Path, yunet_path: Path, astronaut_bgr: np.ndarray
) -> None:
    """A live view's video is the user's data: SIGTERM moves what was written into place."""
    long = tmp_path / "long.avi"
    small = cv2.resize(astronaut_bgr, (160, 160))
    writer = cv2.VideoWriter(str(long), cv2.VideoWriter_fourcc(*"MJPG"), 15, (160, 160))
    for i in range(3000):
        writer.write(np.roll(small, i, axis=1))
    writer.release()
    saved = tmp_path / "saved.avi"
    saved.write_bytes(b"an older video")
    cmd = [sys.executable, "-m", "facesdk", "demo", "--source", str(long), "--model", str(tiny_export)]
    cmd += ["--detector", str(yunet_path), "--no-window", "--save", str(saved), "--force"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".saved.avi.") and p.stat().st_size > 10000 for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the demo never wrote its video"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
    assert 0 < _frames(saved) < 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.avi", "saved.avi"]
    assert os.access(saved, os.R_OK)
