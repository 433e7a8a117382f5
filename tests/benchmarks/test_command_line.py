"""Benchmark reports record commands that run on a user's machine (``benchmarks.common.command_line``)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import command_line
from facesdk.faces.model_store import PACKAGED_DETECTOR


def test_the_known_detector_path_is_left_out(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "yunet.onnx"
    copy.parent.mkdir()
    copy.write_bytes(PACKAGED_DETECTOR.read_bytes())
    argv = ["--frames", "6", "--detector", str(copy), "--out", "x.md"]
    assert (
        command_line("python -m benchmarks.stream", argv)
        == "python -m benchmarks.stream --frames 6 --out x.md"
    )
    assert command_line("python -m benchmarks.scale", [f"--detector={copy}"]) == "python -m benchmarks.scale"


def test_another_detector_stays_in_the_command(tmp_path: Path) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another detector")
    argv = ["--detector", str(other), "--frames", "6"]
    assert (
        command_line("python -m benchmarks.stream", argv)
        == f"python -m benchmarks.stream --detector {other} --frames 6"
    )
