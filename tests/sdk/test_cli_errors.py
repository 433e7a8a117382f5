"""One line per mistake: each CLI mistake exits 2 with one ``error:`` line on stderr and no traceback."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.cli import main
from tests.helpers import one_error

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def image(tmp_path: Path, astronaut_bgr: np.ndarray) -> Path:
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), astronaut_bgr)
    return path


def test_analyze_json_naming_a_directory(
    tmp_path: Path, image: Path, tiny_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "results").mkdir()
    argv = ["analyze", str(image), "--model", str(tiny_export), "--json", str(tmp_path / "results")]
    assert main(argv) == 2
    assert "is a folder" in one_error(capsys)


def test_analyze_json_never_replaces_an_export_file(
    image: Path, tiny_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_export / "model.onnx"
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    argv = ["analyze", str(image), "--model", str(tiny_export), "--json", str(model), "--force"]
    assert main(argv) == 2
    assert "belongs to the facesdk export" in one_error(capsys)
    assert hashlib.sha256(model.read_bytes()).hexdigest() == digest


def test_analyze_json_replaces_a_file_only_with_force(
    tmp_path: Path, image: Path, tiny_export: Path, yunet_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("earlier results\n")
    argv = ["analyze", str(image), "--model", str(tiny_export), "--detector", str(yunet_path)]
    assert main([*argv, "--json", str(out)]) == 2
    assert "pass --force" in one_error(capsys)
    assert out.read_text() == "earlier results\n"
    assert main([*argv, "--json", str(out), "--force"]) == 0
    assert out.read_text().startswith("{")


def test_analyze_input_as_json_output(
    image: Path, tiny_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert main(["analyze", str(image), "--model", str(tiny_export), "--json", str(image), "--force"]) == 2
    assert "is an input" in one_error(capsys)
    assert hashlib.sha256(image.read_bytes()).hexdigest() == digest


def test_models_fetch_dir_naming_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    assert main(["models", "fetch", "--dir", str(target), "--url", "file:///nonexistent"]) == 2
    assert "is a file" in one_error(capsys)
    assert target.read_text() == "x"


def test_a_console_mistake_is_one_line(tmp_path: Path, tiny_export: Path) -> None:
    """The real console script: exit 2, one stderr line, no traceback."""
    (tmp_path / "dir").mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "facesdk",
            "analyze",
            "x.png",
            "--model",
            str(tiny_export),
            "--json",
            str(tmp_path / "dir"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"facesdk analyze: error: --json {tmp_path / 'dir'} is a folder; name a file to write"
    ]


def _truncated_video(tmp_path: Path, astronaut_bgr: np.ndarray, video_writer) -> tuple[Path, int, int]:  # noqa: ANN001
    frames = [np.roll(astronaut_bgr, shift=4 * i, axis=1) for i in range(12)]
    full = video_writer(tmp_path / "full.avi", frames)
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    cap = cv2.VideoCapture(str(cut))
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    read = 0
    while cap.read()[0]:
        read += 1
    cap.release()
    assert 0 < read < declared == 12, (read, declared)
    return cut, read, declared


def test_truncated_video_is_reported(
    tmp_path: Path,
    astronaut_bgr: np.ndarray,
    video_writer,  # noqa: ANN001
    tiny_export: Path,
    yunet_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cut, read, declared = _truncated_video(tmp_path, astronaut_bgr, video_writer)
    out = tmp_path / "out.jsonl"
    argv = [
        "analyze",
        str(cut),
        "--model",
        str(tiny_export),
        "--detector",
        str(yunet_path),
        "--json",
        str(out),
    ]
    with caplog.at_level(logging.WARNING, logger="facesdk.streams"):
        assert main(argv) == 0
    assert len(out.read_text().splitlines()) == read
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(cut) in w and f"{read} of the {declared} frames" in w for w in warnings), warnings


def test_complete_video_is_not_reported(
    tmp_path: Path, astronaut_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from facesdk.streams import FrameStream

    with caplog.at_level(logging.WARNING, logger="facesdk.streams"):
        frames = list(FrameStream(str(astronaut_video)))
    assert len(frames) == 5
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]


def test_failed_fetch_leaves_no_empty_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "models"
    assert main(["models", "fetch", "--dir", str(target), "--url", (tmp_path / "nope.onnx").as_uri()]) == 2
    assert "could not download" in one_error(capsys)
    assert not target.exists()


def test_failed_bench_leaves_no_empty_out(
    tmp_path: Path, tiny_export: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import facesdk.bench.report as report

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "atomic_write_json", disk_full)  # fails after the folder was made
    out = tmp_path / "bench"
    argv = ["bench", "--model", str(tiny_export), "--out", str(out), "--batches", "1", "--repeats", "2"]
    assert main(argv) == 2
    assert "No space left" in capsys.readouterr().err
    assert not out.exists()  # the folder the run created is gone with the run
    out.mkdir()
    (out / "bench.json").write_text("{}")  # an earlier run's report: reused in place
    assert main(argv) == 2
    assert (out / "bench.json").read_text() == "{}"  # a folder that existed before is kept
