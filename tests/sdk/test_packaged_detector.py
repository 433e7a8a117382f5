"""The YuNet detector ships inside the package: found offline after the store, verified on load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tomllib

from facesdk.cli import main
from facesdk.contract.fileio import sha256_file
from facesdk.errors import IntegrityError
from facesdk.faces import model_store
from facesdk.faces.model_store import (
    DETECTOR_FILENAME,
    DETECTOR_SHA256,
    PACKAGED_DETECTOR,
    cache_dir,
    find_detector_model,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def empty_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``FACESDK_HOME`` and ``XDG_CACHE_HOME`` pointing at empty folders."""
    for name in ("home", "cache"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("FACESDK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_the_package_ships_yunet_with_its_licence() -> None:
    assert PACKAGED_DETECTOR.parent == ROOT / "sdk" / "faces" / "models"
    assert sha256_file(PACKAGED_DETECTOR) == DETECTOR_SHA256
    licence = (PACKAGED_DETECTOR.parent / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Shiqi Yu" in licence
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = config["tool"]["setuptools"]["package-data"]["facesdk.faces.models"]
    assert sorted(listed) == sorted([DETECTOR_FILENAME, "LICENSE"])
    assert "facesdk.faces.models" in config["tool"]["setuptools"]["packages"]


def test_analyze_finds_a_face_with_an_empty_store_and_no_network(
    empty_store: Path, tiny_export: Path, astronaut_bgr: np.ndarray
) -> None:
    """``facesdk analyze photo.jpg --model EXPORT`` on a fresh machine: the packaged detector finds the face."""
    cv2.imwrite(str(empty_store / "photo.jpg"), astronaut_bgr)
    env = {**os.environ, "HOME": str(empty_store), "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-m", "facesdk", "analyze", "photo.jpg", "--model", str(tiny_export)],
        cwd=empty_store,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [row] = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(row["faces"]) == 1
    assert not list(empty_store.rglob("*.onnx"))  # nothing was fetched into the store


def test_a_fetched_copy_wins_over_the_packaged_one(
    empty_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert find_detector_model() == PACKAGED_DETECTOR
    argv = ["models", "fetch", "--url", PACKAGED_DETECTOR.as_uri(), "--dir", str(cache_dir())]
    assert main(argv) == 0
    assert find_detector_model() == cache_dir() / DETECTOR_FILENAME
    home = empty_store / "home" / "models" / DETECTOR_FILENAME
    home.parent.mkdir()
    shutil.copyfile(PACKAGED_DETECTOR, home)
    capsys.readouterr()
    assert main(["models", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(home)


def test_a_damaged_packaged_copy_is_refused_on_load(
    empty_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = empty_store / "package" / DETECTOR_FILENAME
    damaged.parent.mkdir()
    data = bytearray(PACKAGED_DETECTOR.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(model_store, "PACKAGED_DETECTOR", damaged)
    with pytest.raises(IntegrityError, match="Reinstall facesdk"):
        find_detector_model()
    with pytest.raises(IntegrityError, match="Reinstall facesdk"):
        find_detector_model(damaged)  # an explicit path that points at it is checked the same way
