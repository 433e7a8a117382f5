"""README.md's Python example runs as written (on the tiny test export and the packaged detector)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    [code] = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return code


def test_the_readme_example_is_ten_lines_at_most() -> None:
    assert len(readme_example().strip().splitlines()) <= 10


def test_the_readme_example_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tiny_export: Path,
    astronaut_bgr: np.ndarray,
) -> None:
    shutil.copytree(tiny_export, tmp_path / "runs" / "quickstart" / "export")
    cv2.imwrite(str(tmp_path / "photo.jpg"), astronaut_bgr)
    writer = cv2.VideoWriter(str(tmp_path / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (512, 512))
    for shift in range(3):
        writer.write(np.roll(astronaut_bgr, 4 * shift, axis=1))
    writer.release()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACESDK_HOME", str(tmp_path / "home"))  # an empty store: the packaged detector
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    exec(compile(readme_example(), "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 3, lines  # the photo's one face, then one line per video frame
    assert lines[0].startswith("(") and lines[1].startswith("0 [(1, ")
