"""The optional ``temperatures`` field of checkpoint and export manifests (absent = 1.0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facesdk.contract.checkpoint import (
    CHECKPOINT_MANIFEST,
    load_checkpoint_manifest,
)
from facesdk.contract.export_manifest import (
    EXPORT_MANIFEST,
    load_export_manifest,
    manifest_from_onnx_metadata,
)
from facesdk.contract.manifest_io import FileEntry
from facesdk.errors import ManifestError
from facesdk.preprocess import Preprocess
from facesdk.tasks import DEFAULT_TASKS
from tests.manifests import checkpoint_manifest, export_manifest

# checkpoint.json as facesdk wrote it before temperatures existed (fields of schema version 1).
OLD_CHECKPOINT = {
    "kind": "checkpoint",
    "schema_version": 1,
    "created": "2026-05-01T00:00:00+00:00",
    "backbone": {"name": "vit_pe_core_tiny_patch16_384", "weights": "random", "kwargs": {"img_size": 64}},
    "preprocess": Preprocess(input_size=(64, 64)).to_json(),
    "tasks": [t.to_json() for t in DEFAULT_TASKS],
    "method": {"name": "full", "config": {}},
    "heads": {t.name: {"kind": "linear", "hidden": 0, "dropout": 0.0} for t in DEFAULT_TASKS},
    "files": {},
    "params": {},
    "training": {},
    "versions": {},
}


def test_old_checkpoint_without_temperatures_loads_with_one(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    data = {
        **OLD_CHECKPOINT,
        "files": {"model.safetensors": FileEntry.of(tmp_path, "model.safetensors").to_json()},
    }
    (tmp_path / CHECKPOINT_MANIFEST).write_text(json.dumps(data))
    manifest = load_checkpoint_manifest(tmp_path)
    assert manifest.temperatures == {}
    assert [manifest.temperature(t.name) for t in DEFAULT_TASKS] == [1.0, 1.0, 1.0]
    assert "temperatures" not in manifest.to_json()  # an uncalibrated manifest is written as before


def test_checkpoint_temperatures_round_trip(tmp_path: Path) -> None:
    manifest = checkpoint_manifest(tmp_path, temperatures={"gender": 1.75, "age": 0.5})
    manifest.write(tmp_path)
    data = json.loads((tmp_path / CHECKPOINT_MANIFEST).read_text())
    assert data["temperatures"] == {"age": 0.5, "gender": 1.75}
    loaded = load_checkpoint_manifest(tmp_path)
    assert loaded == manifest
    assert (loaded.temperature("age"), loaded.temperature("gender"), loaded.temperature("emotion")) == (
        0.5,
        1.75,
        1.0,
    )


def test_old_export_without_temperatures_loads_and_round_trips(tmp_path: Path) -> None:
    manifest = export_manifest(tmp_path)
    data = manifest.to_json()
    assert "temperatures" not in data
    (tmp_path / EXPORT_MANIFEST).write_text(json.dumps(data))
    assert load_export_manifest(tmp_path).temperature("emotion") == 1.0

    calibrated = export_manifest(tmp_path, temperatures={"emotion": 2.0})
    calibrated.write(tmp_path)
    assert json.loads((tmp_path / EXPORT_MANIFEST).read_text())["temperatures"] == {"emotion": 2.0}
    assert load_export_manifest(tmp_path).temperature("emotion") == 2.0
    rebuilt = manifest_from_onnx_metadata(calibrated.onnx_metadata(), "model.onnx")
    assert rebuilt.temperatures == {"emotion": 2.0}
    assert manifest_from_onnx_metadata(manifest.onnx_metadata(), "model.onnx").temperatures == {}


@pytest.mark.parametrize(
    ("temperatures", "message"),
    [
        ({"colour": 1.0}, r"task\(s\) \['colour'\]"),
        ({"age": 0.0}, "'age' must be a number from 0.05 to 20.0, found 0.0"),
        ({"age": -1.0}, "from 0.05 to 20.0"),
        ({"age": float("nan")}, "from 0.05 to 20.0"),
        ({"age": float("inf")}, "from 0.05 to 20.0"),
        ({"age": 1e300}, "found 1e[+]300 .beyond that range the softmax ties classes"),
        ({"age": 20.5}, "from 0.05 to 20.0, found 20.5"),
        ({"age": 0.049}, "from 0.05 to 20.0, found 0.049"),
        ({"age": "2"}, "from 0.05 to 20.0, found '2'"),
        ({"age": True}, "from 0.05 to 20.0"),
        ([1.0, 2.0], "must map task names to numbers, found list"),
    ],
)
def test_bad_temperatures_are_refused(tmp_path: Path, temperatures: object, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        export_manifest(tmp_path, temperatures=temperatures)
    with pytest.raises(ManifestError, match=message):
        checkpoint_manifest(tmp_path, temperatures=temperatures)
    manifest = export_manifest(tmp_path)
    manifest.write(tmp_path)
    data = json.loads((tmp_path / EXPORT_MANIFEST).read_text())
    data["temperatures"] = temperatures
    (tmp_path / EXPORT_MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        load_export_manifest(tmp_path)


@pytest.mark.parametrize("value", [0.05, 20.0])
def test_the_range_ends_are_accepted(tmp_path: Path, value: float) -> None:
    assert export_manifest(tmp_path, temperatures={"age": value}).temperatures == {"age": value}
