"""Each damage to a calibration set -> the exact error class, naming what is wrong."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesdk.calibration.calibset import CALIB_MANIFEST, CalibrationSet, Shard, load_calibration_set
from facesdk.errors import IntegrityError, ManifestError, MissingFileError, SchemaVersionError
from facesdk.manifest_io import FileEntry
from facesdk.preprocess import Preprocess

Damage = Callable[[dict[str, Any], Path], None]
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


def _set(key: str, value: Any) -> Damage:
    return lambda data, _: data.__setitem__(key, value)


def _shard(field: str, value: Any, part: str = "crops") -> Damage:
    return lambda data, _: data["shards"][0][part].__setitem__(field, value)


def _resave(name: str, array: np.ndarray) -> Damage:
    """Replace a shard with another array and record its new hash (a consistent but wrong set)."""

    def damage(data: dict[str, Any], directory: Path) -> None:
        np.save(directory / name, array)
        entry = FileEntry.of(directory, name)
        data["shards"][0]["crops" if name.startswith("crops") else "labels"] = entry.to_json()

    return damage


def _bytes(name: str, change: Callable[[bytes], bytes]) -> Damage:
    return lambda _, directory: (directory / name).write_bytes(change((directory / name).read_bytes()))


CASES: dict[str, tuple[Damage, type[Exception], str]] = {
    "tasks is a string": (_set("tasks", "age"), ManifestError, "field tasks must be a list"),
    "target negative": (_set("target", -1), ManifestError, "field target"),
    "complete is text": (_set("complete", "yes"), ManifestError, "field complete must be true or false"),
    "shards is an object": (_set("shards", {}), ManifestError, "field shards must be a list"),
    "mean is a string": (
        _set("preprocess", {**SPEC.to_json(), "mean": "abc"}),
        ManifestError,
        "preprocess.mean",
    ),
    "count disagrees": (_set("count", 99), ManifestError, "field count is 99"),
    "fingerprint edited": (_set("preprocess_fingerprint", "0" * 64), ManifestError, "fingerprint"),
    "spec edited": (
        _set("preprocess", {**SPEC.to_json(), "input_size": [32, 32]}),
        ManifestError,
        "fingerprint",
    ),
    "incomplete": (_set("complete", False), ManifestError, "incomplete"),
    "shard path escapes": (_shard("path", "../crops-00000.npy"), ManifestError, r"shards\[0\].crops.path"),
    "shard path absolute": (_shard("path", "/tmp/crops.npy"), ManifestError, r"shards\[0\].crops.path"),
    "shard count negative": (lambda d, _: d["shards"][0].__setitem__("count", -3), ManifestError, "count"),
    "schema from the future": (_set("schema_version", 2), SchemaVersionError, "version 2"),
    "shard bytes changed": (
        _bytes("crops-00000.npy", lambda b: b[:-4] + b"\0\0\0\1"),
        IntegrityError,
        "sha256",
    ),
    "shard truncated": (_bytes("labels-00001.npy", lambda b: b[:-8]), IntegrityError, "bytes"),
    "shard missing": (lambda _, d: (d / "crops-00001.npy").unlink(), MissingFileError, "is missing"),
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
    damage, error, match = CASES[case]
    data = json.loads((directory / CALIB_MANIFEST).read_text())
    damage(data, directory)
    (directory / CALIB_MANIFEST).write_text(json.dumps(data))
    with pytest.raises(error, match=match) as info:
        load_calibration_set(directory)
    assert type(info.value) is error, f"{case}: {type(info.value).__name__}: {info.value}"
