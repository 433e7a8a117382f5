"""Each damage to an export or checkpoint folder -> the exact error class, naming what is wrong.

Every case is loaded the way the runtime loads it (``resolve_model`` then the backend), so a
case passes only if the damage is refused before the first frame.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesdk.backends import create_backend
from facesdk.checkpoint import (
    CHECKPOINT_MANIFEST,
    BackboneSpec,
    CheckpointManifest,
    HeadSpec,
    MethodSpec,
    load_checkpoint_manifest,
)
from facesdk.errors import (
    IntegrityError,
    ManifestError,
    MissingFileError,
    ModelMismatchError,
    SchemaVersionError,
)
from facesdk.export_manifest import EXPORT_MANIFEST
from facesdk.manifest_io import FileEntry
from facesdk.model_loader import resolve_model
from facesdk.preprocess import CropPolicy, Preprocess
from facesdk.tasks import DEFAULT_TASKS
from facesdk.testing import make_tiny_export

Damage = Callable[[dict[str, Any], Path], None]


def _set(path: str, value: Any) -> Damage:
    """Set a dotted/indexed field (``preprocess.mean``, ``outputs.0.shape``) of the manifest."""

    def damage(data: dict[str, Any], _: Path) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return damage


def _drop(path: str) -> Damage:
    def damage(data: dict[str, Any], _: Path) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[part]
        del node[last]

    return damage


def _both(*damages: Damage) -> Damage:
    def damage(data: dict[str, Any], directory: Path) -> None:
        for d in damages:
            d(data, directory)

    return damage


def _bytes(name: str, change: Callable[[bytes], bytes]) -> Damage:
    def damage(_: dict[str, Any], directory: Path) -> None:
        (directory / name).write_bytes(change((directory / name).read_bytes()))

    return damage


def _remove(name: str) -> Damage:
    return lambda _, directory: (directory / name).unlink()


def _flip_middle(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 4]) + data[mid + 4 :]


F = "models.onnx-fp32.file"
EXPORT_CASES: dict[str, tuple[Damage, type[Exception], str]] = {
    "mean is a string": (_set("preprocess.mean", "abc"), ManifestError, "preprocess.mean"),
    "mean has NaN": (
        _set("preprocess.mean", [float("nan"), 0.5, 0.5]),
        ManifestError,
        r"preprocess.mean\[0\]",
    ),
    "std is zero": (_set("preprocess.std", [0.5, 0.0, 0.5]), ManifestError, r"preprocess.std\[1\]"),
    "models is a list": (_set("models", []), ManifestError, "field models must be an object"),
    "tasks is a string": (_set("tasks", "age"), ManifestError, "field tasks must be a list"),
    "batch is null": (_set("batch", None), ManifestError, "field batch must be an object"),
    "batch min > max": (
        _set("batch", {"min": 9, "max": 8}),
        ManifestError,
        "field batch must have min <= max",
    ),
    "batch max is a bool": (_set("batch.max", True), ManifestError, "batch.max"),
    "opset is text": (_set("opset", "18"), ManifestError, "field opset"),
    "duplicate labels": (_set("tasks.1.labels", ["male", "male"]), ManifestError, r"tasks\[1\].labels"),
    "one label": (_set("tasks.1.labels", ["male"]), ManifestError, r"tasks\[1\].labels"),
    "input size disagrees with input shape": (
        _set("preprocess.input_size", [48, 48]),
        ManifestError,
        "input.shape",
    ),
    "output shape disagrees with labels": (
        _set("outputs.0.shape", ["batch", 5]),
        ManifestError,
        r"outputs\[0\].shape",
    ),
    "outputs out of task order": (_set("outputs.0.name", "gender"), ManifestError, "field outputs"),
    "model path escapes the folder": (
        _set(f"{F}.path", "../../other/model.onnx"),
        ManifestError,
        f"{F}.path",
    ),
    "model path is absolute": (_set(f"{F}.path", "/etc/model.onnx"), ManifestError, f"{F}.path"),
    "model path has a backslash": (_set(f"{F}.path", "..\\model.onnx"), ManifestError, f"{F}.path"),
    "sha256 is not hex": (_set(f"{F}.sha256", "xyz"), ManifestError, f"{F}.sha256"),
    "size is negative": (_set(f"{F}.size", -1), ManifestError, f"{F}.size"),
    "model key disagrees with its entry": (
        lambda d, _: d["models"].update({"onnx-fp16": d["models"].pop("onnx-fp32")}),
        ManifestError,
        "models.onnx-fp16",
    ),
    "unknown precision": (_set("models.onnx-fp32.precision", "fp8"), ManifestError, "precision"),
    "newer crop geometry": (
        _set("preprocess.crop", {"kind": "align5", "align_version": 2}),
        ManifestError,
        "preprocess.crop.align_version",
    ),  # fmt: skip
    "interpolation unknown": (_set("preprocess.interpolation", "lanczos9"), ManifestError, "interpolation"),
    "missing preprocess": (_drop("preprocess"), ManifestError, "field preprocess must be present"),
    "wrong kind": (_set("kind", "checkpoint"), ManifestError, "expected a 'export' manifest"),
    "schema from the future": (_set("schema_version", 99), SchemaVersionError, "version 99"),
    "model file changed": (_bytes("model.onnx", _flip_middle), IntegrityError, "sha256"),
    "model file truncated": (_bytes("model.onnx", lambda b: b[: len(b) // 2]), IntegrityError, "bytes"),
    "model file missing": (_remove("model.onnx"), MissingFileError, "model.onnx is missing"),
    # a manifest that agrees with itself but not with the model: refused at backend creation
    "input size disagrees with the model": (
        _both(_set("preprocess.input_size", [48, 48]), _set("input.shape", ["batch", 3, 48, 48])),
        ModelMismatchError,
        "preprocess.input_size",
    ),
    "label count disagrees with the model": (
        _both(_set("tasks.1.labels", ["m", "f", "x"]), _set("outputs.1.shape", ["batch", 3])),
        ModelMismatchError,
        r"tasks\[1\].labels",
    ),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pristine_export")
    make_tiny_export(directory)
    return directory


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for item in src.iterdir():
        (dst / item.name).write_bytes(item.read_bytes())
    return dst


def _load_and_run(directory: Path) -> None:
    resolved = resolve_model(directory, backend="onnxruntime")
    create_backend(resolved.backend, resolved.manifest, resolved.path).close()


def test_pristine_export_loads(pristine: Path, tmp_path: Path) -> None:
    _load_and_run(_copy(pristine, tmp_path / "e"))


@pytest.mark.parametrize("case", sorted(EXPORT_CASES))
def test_export_damage_is_refused_with_its_error_class(case: str, pristine: Path, tmp_path: Path) -> None:
    damage, error, match = EXPORT_CASES[case]
    directory = _copy(pristine, tmp_path / "e")
    data = json.loads((directory / EXPORT_MANIFEST).read_text())
    damage(data, directory)
    (directory / EXPORT_MANIFEST).write_text(json.dumps(data))
    with pytest.raises(error, match=match) as info:
        _load_and_run(directory)
    assert type(info.value) is error, f"{case}: {type(info.value).__name__}: {info.value}"
    assert "\n" not in str(info.value)


def test_escaping_file_is_not_even_opened(pristine: Path, tmp_path: Path) -> None:
    """export.json naming ../../other/model.onnx: the other file is never read, even if it is valid."""
    other = _copy(pristine, tmp_path / "other")
    directory = _copy(pristine, tmp_path / "e")
    data = json.loads((directory / EXPORT_MANIFEST).read_text())
    data["models"]["onnx-fp32"]["file"]["path"] = os.path.relpath(other / "model.onnx", directory)
    (directory / EXPORT_MANIFEST).write_text(json.dumps(data))
    (directory / "model.onnx").unlink()
    with pytest.raises(ManifestError, match="plain file name"):
        _load_and_run(directory)


# --- checkpoint folder -----------------------------------------------------------------------


def _safetensors(shapes: dict[str, list[int]]) -> bytes:
    """A minimal safetensors file (float32 zeros) written by hand, so this test needs no torch."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + bytes(offset)


HEADS = {f"heads.{t.name}.0.{p}": ([t.num_classes, 4] if p == "weight" else [t.num_classes]) for t in DEFAULT_TASKS
         for p in ("weight", "bias")}  # fmt: skip


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / "model.safetensors").write_bytes(_safetensors({"backbone.w": [4, 4], **HEADS}))
    CheckpointManifest(
        backbone=BackboneSpec("vit_pe_core_tiny_patch16_384", "random", {"img_size": 64}),
        preprocess=Preprocess(input_size=(64, 64)),
        tasks=DEFAULT_TASKS,
        method=MethodSpec("lora", {"rank": 4}),
        heads={t.name: HeadSpec() for t in DEFAULT_TASKS},
        files={"model.safetensors": FileEntry.of(directory, "model.safetensors")},
    ).write(directory)
    return directory


W = "files.model.safetensors"
CHECKPOINT_CASES: dict[str, tuple[Damage, type[Exception], str]] = {
    "mean is a string": (_set("preprocess.mean", "abc"), ManifestError, "preprocess.mean"),
    "tasks is a string": (_set("tasks", "age"), ManifestError, "field tasks must be a list"),
    "no tasks": (_set("tasks", []), ManifestError, "field tasks must be a list of at least 1"),
    "backbone is null": (_set("backbone", None), ManifestError, "field backbone must be an object"),
    "backbone weights unknown": (_set("backbone.weights", "http://x"), ManifestError, "backbone.weights"),
    "head missing for a task": (
        lambda d, _: d["heads"].pop("age"),
        ManifestError,
        "field heads has no entry",
    ),
    "head dropout out of range": (_set("heads.age.dropout", 2.0), ManifestError, "heads.age.dropout"),
    "mlp head without hidden size": (
        _set("heads.age", {"kind": "mlp", "hidden": 0}),
        ManifestError,
        "hidden",
    ),
    "weights path escapes": (
        lambda d, _: d["files"]["model.safetensors"].update(path="../model.safetensors"),
        ManifestError,
        f"{W}.path",
    ),
    "weights not listed": (_set("files", {}), ManifestError, "lists no model.safetensors"),
    "newer crop geometry": (_set("preprocess.crop.align_version", 2), ManifestError, "align_version"),
    "schema version as text": (_set("schema_version", "1"), SchemaVersionError, "schema version '1'"),
    "weights changed": (_bytes("model.safetensors", _flip_middle), IntegrityError, "sha256"),
    "label count disagrees with the head": (
        _set("tasks.1.labels", ["m", "f", "x"]),
        ManifestError,
        r"tasks\[1\].labels lists 3 labels for 'gender' but the head",
    ),
    "weights missing": (_remove("model.safetensors"), MissingFileError, "model.safetensors is missing"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_checkpoint_damage_is_refused_with_its_error_class(case: str, checkpoint: Path) -> None:
    assert load_checkpoint_manifest(checkpoint).tasks == DEFAULT_TASKS
    damage, error, match = CHECKPOINT_CASES[case]
    data = json.loads((checkpoint / CHECKPOINT_MANIFEST).read_text())
    damage(data, checkpoint)
    (checkpoint / CHECKPOINT_MANIFEST).write_text(json.dumps(data))
    with pytest.raises(error, match=match) as info:
        load_checkpoint_manifest(checkpoint)
    assert type(info.value) is error, f"{case}: {type(info.value).__name__}: {info.value}"


def test_old_checkpoint_without_align_version_loads_as_version_1(checkpoint: Path) -> None:
    data = json.loads((checkpoint / CHECKPOINT_MANIFEST).read_text())
    assert "align_version" not in data["preprocess"]["crop"]  # version 1 stays implicit on disk
    assert load_checkpoint_manifest(checkpoint).preprocess.crop.align_version == 1


def test_align_version_is_part_of_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    import facesdk.preprocess as pre

    v1 = Preprocess(crop=CropPolicy("align5", 0.4))
    legacy = {"input_size": [384, 384], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic",
              "crop": {"kind": "align5", "margin": 0.4}}  # fmt: skip
    import hashlib

    text = json.dumps(legacy, sort_keys=True, separators=(",", ":"))
    assert (
        v1.fingerprint() == hashlib.sha256(text.encode()).hexdigest()
    )  # fingerprints from before versioning
    monkeypatch.setattr(pre, "SUPPORTED_ALIGN_VERSIONS", (1, 2))
    v2 = Preprocess(crop=CropPolicy("align5", 0.4, align_version=2))
    assert v2.fingerprint() != v1.fingerprint()
    assert Preprocess.from_json(v2.to_json()) == v2
