"""Fixtures for the SDK tests (the tiny export, YuNet and the astronaut image come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

ASTRONAUT_BOX = (178.0, 63.0, 90.0, 113.0)


@pytest.fixture(scope="session")
def astronaut_box() -> tuple[float, float, float, float]:
    """Where YuNet finds the astronaut's face (x, y, w, h), per shared/models/README.md."""
    return ASTRONAUT_BOX


@pytest.fixture(scope="session")
def video_writer():  # noqa: ANN201 - returns the helper
    return write_video


@pytest.fixture(scope="session")
def camera_gray() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.camera()


@pytest.fixture()
def analyzer(tiny_export: Path, yunet_path: Path) -> Iterator[object]:
    from facesdk import Analyzer

    with Analyzer(tiny_export, backend="onnxruntime", detector=yunet_path) as a:
        yield a


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write frames to ``path`` (.avi -> MJPG, .mp4 -> mp4v)."""
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture()
def astronaut_video(tmp_path: Path, astronaut_bgr: np.ndarray) -> Path:
    frames = [np.roll(astronaut_bgr, shift=2 * i, axis=1) for i in range(5)]
    return write_video(tmp_path / "clip.avi", frames)
