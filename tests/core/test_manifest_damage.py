"""Each damage to an export or checkpoint folder -> the exact error class, naming what is wrong.

Every case is loaded the way the runtime loads it (``resolve_model`` then the backend), so a
case passes only if the damage is refused before the first frame.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from facesdk.backends import create_backend
from facesdk.contract.checkpoint import (
    CHECKPOINT_MANIFEST,
    load_checkpoint_manifest,
)
from facesdk.contract.export_manifest import EXPORT_MANIFEST
from facesdk.errors import (
    IntegrityError,
    ManifestError,
    MissingFileError,
    ModelMismatchError,
    SchemaVersionError,
)
from facesdk.model_loader import resolve_model
from facesdk.preprocess import CropPolicy, Preprocess
from facesdk.tasks import DEFAULT_TASKS
from facesdk.testing import make_tiny_export
from tests.manifests import (
    Case,
    assert_refused,
    both,
    change_bytes,
    checkpoint_manifest,
    damage_manifest,
    drop,
    flip_middle,
    remove,
    set_field,
)

F = "models.onnx-fp32.file"
EXPORT_CASES: dict[str, Case] = {
    "mean is a string": (set_field("preprocess.mean", "abc"), ManifestError, "preprocess.mean"),
    "mean has NaN": (
        set_field("preprocess.mean", [float("nan"), 0.5, 0.5]),
        ManifestError,
        r"preprocess.mean\[0\]",
    ),
    "std is zero": (set_field("preprocess.std", [0.5, 0.0, 0.5]), ManifestError, r"preprocess.std\[1\]"),
    "models is a list": (set_field("models", []), ManifestError, "field models must be an object"),
    "tasks is a string": (set_field("tasks", "age"), ManifestError, "field tasks must be a list"),
    "batch is null": (set_field("batch", None), ManifestError, "field batch must be an object"),
    "batch min > max": (
        set_field("batch", {"min": 9, "max": 8}),
        ManifestError,
        "field batch must have min <= max",
    ),
    "batch max is a bool": (set_field("batch.max", True), ManifestError, "batch.max"),
    "opset is text": (set_field("opset", "18"), ManifestError, "field opset"),
    "duplicate labels": (set_field("tasks.1.labels", ["male", "male"]), ManifestError, r"tasks\[1\].labels"),
    "one label": (set_field("tasks.1.labels", ["male"]), ManifestError, r"tasks\[1\].labels"),
    "input size disagrees with input shape": (
        set_field("preprocess.input_size", [48, 48]),
        ManifestError,
        "input.shape",
    ),
    "output shape disagrees with labels": (
        set_field("outputs.0.shape", ["batch", 5]),
        ManifestError,
        r"outputs\[0\].shape",
    ),
    "outputs out of task order": (set_field("outputs.0.name", "gender"), ManifestError, "field outputs"),
    "model path escapes the folder": (
        set_field(f"{F}.path", "../../other/model.onnx"),
        ManifestError,
        f"{F}.path",
    ),
    "model path is absolute": (set_field(f"{F}.path", "/etc/model.onnx"), ManifestError, f"{F}.path"),
    "model path has a backslash": (set_field(f"{F}.path", "..\\model.onnx"), ManifestError, f"{F}.path"),
    "sha256 is not hex": (set_field(f"{F}.sha256", "xyz"), ManifestError, f"{F}.sha256"),
    "size is negative": (set_field(f"{F}.size", -1), ManifestError, f"{F}.size"),
    "model key disagrees with its entry": (
        lambda d, _: d["models"].update({"onnx-fp16": d["models"].pop("onnx-fp32")}),
        ManifestError,
        "models.onnx-fp16",
    ),
    "unknown precision": (set_field("models.onnx-fp32.precision", "fp8"), ManifestError, "precision"),
    "newer crop geometry": (
        set_field("preprocess.crop", {"kind": "align5", "align_version": 2}),
        ManifestError,
        "preprocess.crop.align_version",
    ),  # fmt: skip
    "interpolation unknown": (
        set_field("preprocess.interpolation", "lanczos9"),
        ManifestError,
        "interpolation",
    ),
    "missing preprocess": (drop("preprocess"), ManifestError, "field preprocess must be present"),
    "wrong kind": (set_field("kind", "checkpoint"), ManifestError, "expected a 'export' manifest"),
    "schema from the future": (set_field("schema_version", 99), SchemaVersionError, "version 99"),
    "model file changed": (change_bytes("model.onnx", flip_middle), IntegrityError, "sha256"),
    "model file truncated": (change_bytes("model.onnx", lambda b: b[: len(b) // 2]), IntegrityError, "bytes"),
    "model file missing": (remove("model.onnx"), MissingFileError, "model.onnx is missing"),
    # a manifest that agrees with itself but not with the model: refused at backend creation
    "input size disagrees with the model": (
        both(set_field("preprocess.input_size", [48, 48]), set_field("input.shape", ["batch", 3, 48, 48])),
        ModelMismatchError,
        "preprocess.input_size",
    ),
    "label count disagrees with the model": (
        both(set_field("tasks.1.labels", ["m", "f", "x"]), set_field("outputs.1.shape", ["batch", 3])),
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
    directory = _copy(pristine, tmp_path / "e")
    info = assert_refused(directory, EXPORT_MANIFEST, EXPORT_CASES[case], _load_and_run, case)
    assert "\n" not in str(info.value)


def test_escaping_file_is_not_even_opened(pristine: Path, tmp_path: Path) -> None:
    """export.json naming ../../other/model.onnx: the other file is never read, even if it is valid."""
    other = _copy(pristine, tmp_path / "other")
    directory = _copy(pristine, tmp_path / "e")
    damage_manifest(
        directory, EXPORT_MANIFEST, set_field(f"{F}.path", os.path.relpath(other / "model.onnx", directory))
    )
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
    checkpoint_manifest(directory, _safetensors({"backbone.w": [4, 4], **HEADS})).write(directory)
    return directory


W = "files.model.safetensors"
CHECKPOINT_CASES: dict[str, Case] = {
    "mean is a string": (set_field("preprocess.mean", "abc"), ManifestError, "preprocess.mean"),
    "tasks is a string": (set_field("tasks", "age"), ManifestError, "field tasks must be a list"),
    "no tasks": (set_field("tasks", []), ManifestError, "field tasks must be a list of at least 1"),
    "backbone is null": (set_field("backbone", None), ManifestError, "field backbone must be an object"),
    "backbone weights unknown": (
        set_field("backbone.weights", "http://x"),
        ManifestError,
        "backbone.weights",
    ),
    "head missing for a task": (
        lambda d, _: d["heads"].pop("age"),
        ManifestError,
        "field heads has no entry",
    ),
    "head dropout out of range": (set_field("heads.age.dropout", 2.0), ManifestError, "heads.age.dropout"),
    "mlp head without hidden size": (
        set_field("heads.age", {"kind": "mlp", "hidden": 0}),
        ManifestError,
        "hidden",
    ),
    "weights path escapes": (
        lambda d, _: d["files"]["model.safetensors"].update(path="../model.safetensors"),
        ManifestError,
        f"{W}.path",
    ),
    "weights not listed": (set_field("files", {}), ManifestError, "lists no model.safetensors"),
    "newer crop geometry": (set_field("preprocess.crop.align_version", 2), ManifestError, "align_version"),
    "schema version as text": (set_field("schema_version", "1"), SchemaVersionError, "schema version '1'"),
    "weights changed": (change_bytes("model.safetensors", flip_middle), IntegrityError, "sha256"),
    "label count disagrees with the head": (
        set_field("tasks.1.labels", ["m", "f", "x"]),
        ManifestError,
        r"tasks\[1\].labels lists 3 labels for 'gender' but the head",
    ),
    "weights missing": (remove("model.safetensors"), MissingFileError, "model.safetensors is missing"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_checkpoint_damage_is_refused_with_its_error_class(case: str, checkpoint: Path) -> None:
    assert load_checkpoint_manifest(checkpoint).tasks == DEFAULT_TASKS
    assert_refused(checkpoint, CHECKPOINT_MANIFEST, CHECKPOINT_CASES[case], load_checkpoint_manifest, case)


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
