"""The crop geometry pinned: golden crops of the astronaut and the published ArcFace template.

The crop is part of every trained model's contract. These tests fail when what
``crop_face`` returns for a fixed spec changes: if the change is intended, bump
``facesdk.preprocess.ALIGN_VERSION`` (old models are then refused instead of receiving other
crops) and write the new references with ``python tests/core/test_crop_golden.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.faces.align import align_template, crop_face
from facesdk.preprocess import ALIGN_VERSION, CropPolicy, Preprocess
from facesdk.results import Detection

GOLDEN = Path(__file__).parent / "golden"

ARCFACE_112 = [
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
]
"""The published five-point ArcFace template for 112 x 112 crops (insightface), typed in by hand."""

ASTRONAUT = Detection(
    box=(178.17, 62.91, 89.90, 113.33),
    score=0.93,
    landmarks=((200.12, 101.82), (247.13, 102.62), (220.37, 124.54), (198.61, 142.77), (239.67, 143.64)),
)
"""YuNet 2026may on ``skimage.data.astronaut()`` (checked by ``test_stored_landmarks_are_yunets``)."""

SPECS = {
    "align5_m040_64x64_bilinear": Preprocess(
        input_size=(64, 64), interpolation="bilinear", crop=CropPolicy("align5", 0.4)
    ),
    "align5_m000_64x48_bicubic": Preprocess(
        input_size=(64, 48), interpolation="bicubic", crop=CropPolicy("align5", 0.0)
    ),
    "box_m020_48x64_bilinear": Preprocess(
        input_size=(48, 64), interpolation="bilinear", crop=CropPolicy("box", 0.2)
    ),
}
"""Fixed specs: two margins, non-square sizes both ways (pins height/width order), both crop kinds."""

MEAN_TOLERANCE = 1.0
"""Largest mean |difference| (grey levels) allowed: interpolation rounding across OpenCV builds."""
PIXEL_TOLERANCE = 24
"""Largest single-pixel |difference| allowed (edges under a sub-pixel shift)."""


def _astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def _golden(name: str) -> Path:
    return GOLDEN / f"astronaut_v{ALIGN_VERSION}_{name}.png"


def test_template_at_margin_zero_is_the_published_arcface_template() -> None:
    np.testing.assert_allclose(align_template((112, 112), 0.0), ARCFACE_112, atol=1e-9)
    # other sizes scale it per axis: x with the width, y with the height
    np.testing.assert_allclose(align_template((224, 112), 0.0), np.array(ARCFACE_112) * [1.0, 2.0], atol=1e-9)


def test_margin_shrinks_the_template_about_the_centre() -> None:
    """margin m keeps (1 + m) times the face: each point moves towards the centre by 1 / (1 + m)."""
    got = align_template((112, 112), 0.4)
    want = 56.0 + (np.array(ARCFACE_112) - 56.0) / 1.4
    np.testing.assert_allclose(got, want, atol=1e-9)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_astronaut_crop_matches_its_golden_reference(name: str) -> None:
    path = _golden(name)
    assert path.is_file(), (
        f"no golden crop {path.name} for crop geometry version {ALIGN_VERSION}; write them with "
        "'python tests/core/test_crop_golden.py' only if the geometry change is intended"
    )
    reference = cv2.imread(str(path), cv2.IMREAD_COLOR)
    crop = crop_face(_astronaut(), ASTRONAUT, SPECS[name])
    assert crop.shape == reference.shape == (*SPECS[name].input_size, 3)
    diff = np.abs(crop.astype(np.int16) - reference.astype(np.int16))
    assert diff.mean() <= MEAN_TOLERANCE and diff.max() <= PIXEL_TOLERANCE, (
        f"{name}: crop differs from its golden reference (mean {diff.mean():.2f}, max {diff.max()}): "
        "the crop geometry changed; bump ALIGN_VERSION if that is intended"
    )


def test_golden_crops_are_not_all_alike() -> None:
    """The references differ from each other (a test whose references were one image guards nothing)."""
    a, b = (cv2.imread(str(_golden(n))) for n in ("align5_m040_64x64_bilinear", "align5_m000_64x48_bicubic"))
    assert a is not None and b is not None
    resized = cv2.resize(b, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(a.astype(np.int16) - resized.astype(np.int16)).mean() > 10


def test_stored_landmarks_are_yunets(yunet_path: Path) -> None:
    from facesdk.faces import FaceDetector

    found = FaceDetector(yunet_path).detect(_astronaut())
    assert len(found) == 1
    np.testing.assert_allclose(found[0].landmarks, ASTRONAUT.landmarks, atol=1.5)


def _write_references() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, spec in SPECS.items():
        cv2.imwrite(str(_golden(name)), crop_face(_astronaut(), ASTRONAUT, spec))
        print(_golden(name))


if __name__ == "__main__":
    _write_references()
    sys.exit(0)
