"""Each damage to a calibration set -> the exact error class, naming what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesdk.calibration.calibset import CALIB_MANIFEST, CalibrationSet, Shard, load_calibration_set
from facesdk.contract.manifest_io import FileEntry
from facesdk.errors import IntegrityError, ManifestError, MissingFileError, SchemaVersionError
from facesdk.preprocess import Preprocess
from tests.manifests import Case, Damage, assert_refused, change_bytes, remove, set_field

SPEC = Preprocess(input_size=(16, 16))
TASKS = ("age", "gender")


def _write_set(directory: Path, counts: tuple[int, ...] = (3, 2)) -> CalibrationSet:
    directory.mkdir()
    rng = np.random.default_rng(0)
    shards, end = [], 0
    for i, n in enumerate(counts):
        np.save(directory / f"crops-{i:05d}.npy", rng.standard_normal((n, 3, 16, 16)).astype(np.float32))
        np.save(directory / f"labels-{i:05d}.npy", rng.integers(-1, 2, (n, len(TASKS))).astype(np.int64))
        end += n
        shards.append(
            Shard(
                FileEntry.of(directory, f"crops-{i:05d}.npy"),
                FileEntry.of(directory, f"labels-{i:05d}.npy"),
                count=n,
                plan_end=end,
                no_face=0,
            )
        )
    calib = CalibrationSet(
        SPEC, TASKS, ({"path": "x", "kind": "images"},), tuple(shards), sum(counts), "p", True
    )
    calib.write(directory)
    return calib


def _shard(field: str, value: Any, part: str = "crops") -> Damage:
    return set_field(f"shards.0.{part}.{field}", value)


def _resave(name: str, array: np.ndarray) -> Damage:
    """Replace a shard with another array and record its new hash (a consistent but wrong set)."""

    def damage(data: dict[str, Any], directory: Path) -> None:
        np.save(directory / name, array)
        entry = FileEntry.of(directory, name)
        data["shards"][0]["crops" if name.startswith("crops") else "labels"] = entry.to_json()

    return damage


CASES: dict[str, Case] = {
    "tasks is a string": (set_field("tasks", "age"), ManifestError, "field tasks must be a list"),
    "target negative": (set_field("target", -1), ManifestError, "field target"),
    "complete is text": (set_field("complete", "yes"), ManifestError, "field complete must be true or false"),
    "shards is an object": (set_field("shards", {}), ManifestError, "field shards must be a list"),
    "mean is a string": (
        set_field("preprocess", {**SPEC.to_json(), "mean": "abc"}),
        ManifestError,
        "preprocess.mean",
    ),
    "count disagrees": (set_field("count", 99), ManifestError, "field count is 99"),
    "fingerprint edited": (set_field("preprocess_fingerprint", "0" * 64), ManifestError, "fingerprint"),
    "spec edited": (
        set_field("preprocess", {**SPEC.to_json(), "input_size": [32, 32]}),
        ManifestError,
        "fingerprint",
    ),
    "incomplete": (set_field("complete", False), ManifestError, "incomplete"),
    "shard path escapes": (_shard("path", "../crops-00000.npy"), ManifestError, r"shards\[0\].crops.path"),
    "shard path absolute": (_shard("path", "/tmp/crops.npy"), ManifestError, r"shards\[0\].crops.path"),
    "shard count negative": (set_field("shards.0.count", -3), ManifestError, "count"),
    "schema from the future": (set_field("schema_version", 2), SchemaVersionError, "version 2"),
    "shard bytes changed": (
        change_bytes("crops-00000.npy", lambda b: b[:-4] + b"\0\0\0\1"),
        IntegrityError,
        "sha256",
    ),
    "shard truncated": (change_bytes("labels-00001.npy", lambda b: b[:-8]), IntegrityError, "bytes"),
    "shard missing": (remove("crops-00001.npy"), MissingFileError, "is missing"),
    "crops of another size": (
        _resave("crops-00000.npy", np.zeros((3, 3, 8, 8), np.float32)),
        ManifestError,
        r"shards\[0\].crops",
    ),
    "labels for other tasks": (
        _resave("labels-00000.npy", np.zeros((3, 5), np.int64)),
        ManifestError,
        r"shards\[0\].labels",
    ),
    "shard is not an array": (
        lambda data, d: (
            (d / "crops-00000.npy").write_bytes(b"not numpy"),
            data["shards"][0].__setitem__("crops", FileEntry.of(d, "crops-00000.npy").to_json()),
        ),
        ManifestError,
        "not a readable .npy",
    ),
}


def test_pristine_set_loads(tmp_path: Path) -> None:
    calib = _write_set(tmp_path / "c")
    assert load_calibration_set(tmp_path / "c") == calib


@pytest.mark.parametrize("case", sorted(CASES))
def test_calibration_damage_is_refused_with_its_error_class(case: str, tmp_path: Path) -> None:
    directory = tmp_path / "c"
    _write_set(directory)
    assert_refused(directory, CALIB_MANIFEST, CASES[case], load_calibration_set, case)
