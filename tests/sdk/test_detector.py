from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.cli import main as cli_main
from facesdk.contract.manifest_io import sha256_file
from facesdk.errors import ConfigError, DetectorNotFoundError, IntegrityError
from facesdk.faces import (
    DETECTOR_FILENAME,
    DetectorConfig,
    FaceDetector,
    fetch_detector_model,
    find_detector_model,
    model_store,
)
from facesdk.faces.model_store import cache_dir, default_fetch_dir
from facesdk.tracking import iou


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("FACESDK_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_lookup_order_explicit_then_home_then_cache(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, yunet_path: Path
) -> None:
    cached = cache_dir() / DETECTOR_FILENAME
    assert cached == clean_env / "cache" / "facesdk" / "models" / DETECTOR_FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(yunet_path.read_bytes())
    assert find_detector_model() == cached
    home = clean_env / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / DETECTOR_FILENAME).write_bytes(yunet_path.read_bytes())
    monkeypatch.setenv("FACESDK_HOME", str(home))
    assert find_detector_model() == home / "models" / DETECTOR_FILENAME
    explicit = clean_env / "mine.onnx"
    explicit.write_bytes(b"e")
    assert find_detector_model(explicit) == explicit
    assert default_fetch_dir() == home / "models"


def test_missing_detector_says_what_to_do(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        model_store, "PACKAGED_DETECTOR", clean_env / "lost" / DETECTOR_FILENAME
    )  # a broken install
    with pytest.raises(DetectorNotFoundError) as info:
        find_detector_model()
    message = str(info.value)
    for hint in (
        "facesdk models fetch",
        "FACESDK_HOME",
        "detector=PATH",
        str(cache_dir()),
        "Reinstall facesdk",
    ):
        assert hint in message
    with pytest.raises(DetectorNotFoundError, match="does not exist"):
        find_detector_model(clean_env / "nope.onnx")


def test_fetch_from_file_url_verifies_and_installs(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = clean_env / "mirror.onnx"
    source.write_bytes(b"yunet bytes" * 100)
    digest = sha256_file(source)
    monkeypatch.setattr(model_store, "DETECTOR_SHA256", digest)  # these bytes stand in for the real file
    path = fetch_detector_model(clean_env / "dest", url=source.as_uri(), sha256=digest.upper())
    assert path.read_bytes() == source.read_bytes()
    assert fetch_detector_model(clean_env / "dest", url="file:///nonexistent", sha256=digest) == path
    assert not list((clean_env / "dest").glob(".*part"))


def test_fetch_refuses_sha256_mismatch_and_leaves_nothing(clean_env: Path) -> None:
    def opener(url: str, timeout: float) -> io.BytesIO:
        return io.BytesIO(b"tampered")

    with pytest.raises(IntegrityError, match="refusing"):
        fetch_detector_model(clean_env / "dest", opener=opener)
    assert list((clean_env / "dest").iterdir()) == []


def test_fetch_refuses_a_digest_the_store_would_reject(clean_env: Path) -> None:
    """Another file under the detector's name would be refused as damaged on every later load:
    fetch says so before downloading, and names the way that works (a path)."""
    source = clean_env / "other.onnx"
    source.write_bytes(b"another detector" * 100)
    with pytest.raises(ConfigError, match="detector=PATH"):
        fetch_detector_model(clean_env / "dest", url=source.as_uri(), sha256=sha256_file(source))
    assert not (clean_env / "dest").exists()
    code = cli_main(["models", "fetch", "--dir", str(clean_env / "dest"), "--url", source.as_uri(),
                     "--sha256", sha256_file(source)])  # fmt: skip
    assert code == 2 and not (clean_env / "dest").exists()


def test_detector_config_refuses_bad_values() -> None:
    from facesdk.errors import ConfigError

    with pytest.raises(ConfigError):
        DetectorConfig(score_threshold=1.5)


def test_astronaut_has_one_face(yunet_path: Path, astronaut_bgr: np.ndarray, astronaut_box: tuple) -> None:
    faces = FaceDetector(yunet_path).detect(astronaut_bgr)
    assert len(faces) == 1
    assert iou(faces[0].box, astronaut_box) >= 0.5
    assert len(faces[0].landmarks) == 5


def test_grayscale_camera_face(yunet_path: Path, camera_gray: np.ndarray) -> None:
    faces = FaceDetector(yunet_path).detect(camera_gray)
    assert len(faces) == 1 and iou(faces[0].box, (196, 113, 61, 81)) >= 0.5


def test_huge_frame_is_downscaled_and_boxes_scaled_back(
    yunet_path: Path, astronaut_bgr: np.ndarray, astronaut_box: tuple
) -> None:
    big = cv2.resize(astronaut_bgr, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR)
    faces = FaceDetector(yunet_path, DetectorConfig(max_side=640)).detect(big)
    assert len(faces) == 1
    assert iou(faces[0].box, tuple(4 * v for v in astronaut_box)) >= 0.5


def test_min_face_size_and_blank_frame(yunet_path: Path, astronaut_bgr: np.ndarray) -> None:
    assert FaceDetector(yunet_path, DetectorConfig(min_face_size=200)).detect(astronaut_bgr) == []
    assert FaceDetector(yunet_path).detect(np.zeros((240, 320, 3), np.uint8)) == []
