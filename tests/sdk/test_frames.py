from __future__ import annotations

import numpy as np
import pytest

from facesdk.errors import InvalidFrameError
from facesdk.frames import to_bgr_uint8


def test_uint8_bgr_passes_through_unchanged() -> None:
    frame = np.zeros((4, 5, 3), np.uint8)
    assert to_bgr_uint8(frame) is frame


@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 1)])
def test_grayscale_becomes_three_channels(shape: tuple[int, ...]) -> None:
    frame = np.full(shape, 77, np.uint8)
    out = to_bgr_uint8(frame)
    assert out.shape == (6, 7, 3) and out.dtype == np.uint8 and (out == 77).all()


def test_bgra_drops_alpha() -> None:
    frame = np.zeros((4, 4, 4), np.uint8)
    frame[..., 0], frame[..., 3] = 10, 255
    out = to_bgr_uint8(frame)
    assert out.shape == (4, 4, 3) and (out[..., 0] == 10).all()


@pytest.mark.parametrize(("value", "expected"), [(1.0, 255), (0.5, 128), (200.0, 200)])
def test_float_frames_are_scaled(value: float, expected: int) -> None:
    frame = np.zeros((4, 4, 3), np.float32)
    frame[0, 0] = value
    if value > 1:
        frame[1, 1] = 0.5  # still in [0, 255] range
    assert to_bgr_uint8(frame)[0, 0, 0] == expected


def test_uint16_is_scaled() -> None:
    frame = np.full((4, 4, 3), 65535, np.uint16)
    assert (to_bgr_uint8(frame) == 255).all()


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (None, "None"),
        ("not an image", "str"),
        (np.zeros((0, 0, 3), np.uint8), "shape"),
        (np.zeros((5,), np.uint8), "shape"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((4, 4, 3), np.int64), "dtype"),
        (np.full((4, 4, 3), -1.0, np.float32), r"\[0, 1\] or \[0, 255\]"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_frames_are_refused_with_what_was_expected(frame: object, match: str) -> None:
    with pytest.raises(InvalidFrameError, match=match) as info:
        to_bgr_uint8(frame)
    assert "expected" in str(info.value)
