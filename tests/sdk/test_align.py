from __future__ import annotations

import numpy as np
import pytest

from facesdk import CropPolicy, Detection, Preprocess
from facesdk.errors import ConfigError
from facesdk.faces import align_template, crop_face, crop_faces, umeyama_similarity

LANDMARKS = ((200.1, 101.8), (247.1, 102.6), (220.4, 124.5), (198.6, 142.8), (239.7, 143.6))
DET = Detection(box=(178.0, 63.0, 90.0, 113.0), score=0.9, landmarks=LANDMARKS)


def _frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(300, 400, 3), dtype=np.uint8)


def test_umeyama_recovers_a_known_similarity() -> None:
    src = np.array(LANDMARKS)
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift
    matrix = umeyama_similarity(src, dst)
    np.testing.assert_allclose(matrix[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-7)


def test_template_margin_keeps_more_context() -> None:
    tight, wide = align_template((112, 112), 0.0), align_template((112, 112), 0.5)
    assert np.ptp(wide[:, 0]) < np.ptp(tight[:, 0])
    np.testing.assert_allclose(tight[0], (38.2946, 51.6963))


@pytest.mark.parametrize("kind", ["align5", "box", "full"])
def test_crops_have_input_size_and_are_deterministic(kind: str) -> None:
    spec = Preprocess(input_size=(48, 40), crop=CropPolicy(kind=kind, margin=0.3))
    a, b = crop_face(_frame(), DET, spec), crop_face(_frame(), DET, spec)
    assert a.shape == (48, 40, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_align5_maps_landmarks_onto_template() -> None:
    spec = Preprocess(input_size=(64, 64), crop=CropPolicy("align5", 0.4))
    frame = np.zeros((300, 400, 3), np.uint8)
    x, y = (round(v) for v in LANDMARKS[2])
    frame[y - 1 : y + 2, x - 1 : x + 2] = 255  # the nose tip
    crop = crop_face(frame, DET, spec)
    target = align_template((64, 64), 0.4)[2]
    ys, xs = np.nonzero(crop[..., 0] > 60)
    assert abs(xs.mean() - target[0]) < 2 and abs(ys.mean() - target[1]) < 2


def test_face_cut_by_border_is_padded_with_zeros() -> None:
    frame = np.full((100, 100, 3), 200, np.uint8)
    det = Detection(box=(-30.0, -30.0, 60.0, 60.0), score=0.9, landmarks=())
    crop = crop_face(frame, det, Preprocess(input_size=(32, 32), crop=CropPolicy("box", 0.0)))
    assert (crop[0, 0] == 0).all() and (crop[-1, -1] == 200).all()


def test_align5_without_landmarks_is_refused() -> None:
    det = Detection(box=(10.0, 10.0, 20.0, 20.0), score=0.9, landmarks=())
    with pytest.raises(ConfigError, match="kind='box'"):
        crop_face(_frame(), det, Preprocess(input_size=(32, 32)))


def test_crop_faces_batches_many() -> None:
    crops = crop_faces(_frame(), [DET] * 5, Preprocess(input_size=(32, 32)))
    assert len(crops) == 5 and all(c.shape == (32, 32, 3) for c in crops)
