"""Small checkpoint and export manifests, and the damage tables that test how loaders refuse them.

Imported as ``tests.manifests`` (pytest puts the repository root on ``sys.path``). A damage is a
function ``damage(manifest_data, directory)`` that edits the parsed manifest in place or a file
of the folder; a case pairs one with the error class and message the loader must raise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from facesdk.contract.checkpoint import BackboneSpec, CheckpointManifest, HeadSpec, MethodSpec
from facesdk.contract.export_manifest import ExportManifest, ModelEntry, TensorSpec
from facesdk.contract.manifest_io import FileEntry
from facesdk.preprocess import Preprocess
from facesdk.tasks import DEFAULT_TASKS

__all__ = [
    "Case",
    "Damage",
    "assert_refused",
    "both",
    "change_bytes",
    "checkpoint_manifest",
    "damage_manifest",
    "drop",
    "export_manifest",
    "flip_middle",
    "remove",
    "set_field",
]

Damage = Callable[[dict[str, Any], Path], None]
Case = tuple[Damage, type[Exception], str]
"""A damage, the error class the loader must raise and a regex its message must match."""


def checkpoint_manifest(directory: Path, weights: bytes = b"weights", **fields: Any) -> CheckpointManifest:
    """A 64 px checkpoint manifest of the default tasks; writes ``weights`` as its model.safetensors."""
    (directory / "model.safetensors").write_bytes(weights)
    defaults: dict[str, Any] = {
        "backbone": BackboneSpec("vit_pe_core_tiny_patch16_384", "random", {"img_size": 64}),
        "preprocess": Preprocess(input_size=(64, 64)),
        "tasks": DEFAULT_TASKS,
        "method": MethodSpec("lora", {"rank": 4}),
        "heads": {t.name: HeadSpec() for t in DEFAULT_TASKS},
        "files": {"model.safetensors": FileEntry.of(directory, "model.safetensors")},
    }
    return CheckpointManifest(**{**defaults, **fields})


def export_manifest(directory: Path, **fields: Any) -> ExportManifest:
    """A 64 px export manifest of the default tasks, batch 1 to 16; writes a stand-in model.onnx."""
    (directory / "model.onnx").write_bytes(b"onnx bytes")
    defaults: dict[str, Any] = {
        "tasks": DEFAULT_TASKS,
        "preprocess": Preprocess(input_size=(64, 64)),
        "input": TensorSpec("input", ("batch", 3, 64, 64)),
        "outputs": tuple(TensorSpec(t.name, ("batch", t.num_classes)) for t in DEFAULT_TASKS),
        "batch": (1, 16),
        "opset": 18,
        "models": {"onnx-fp32": ModelEntry(FileEntry.of(directory, "model.onnx"), "onnx", "fp32")},
    }
    return ExportManifest(**{**defaults, **fields})


def _walk(data: Any, parts: list[str]) -> Any:
    for part in parts:
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def set_field(path: str, value: Any) -> Damage:
    """Set a dotted/indexed field (``preprocess.mean``, ``outputs.0.shape``) of the manifest."""

    def damage(data: dict[str, Any], _: Path) -> None:
        *parents, last = path.split(".")
        node = _walk(data, parents)
        node[int(last) if isinstance(node, list) else last] = value

    return damage


def drop(path: str) -> Damage:
    """Delete a dotted field of the manifest."""

    def damage(data: dict[str, Any], _: Path) -> None:
        *parents, last = path.split(".")
        del _walk(data, parents)[last]

    return damage


def both(*damages: Damage) -> Damage:
    """Apply each damage in turn."""

    def damage(data: dict[str, Any], directory: Path) -> None:
        for d in damages:
            d(data, directory)

    return damage


def change_bytes(name: str, change: Callable[[bytes], bytes]) -> Damage:
    """Rewrite the folder's file ``name`` as ``change(its bytes)`` (the manifest stays as it was)."""
    return lambda _, directory: (directory / name).write_bytes(change((directory / name).read_bytes()))


def remove(name: str) -> Damage:
    """Delete the folder's file ``name``."""
    return lambda _, directory: (directory / name).unlink()


def flip_middle(data: bytes) -> bytes:
    """The same bytes with four in the middle inverted (same size, other sha256)."""
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 4]) + data[mid + 4 :]


def damage_manifest(directory: Path, manifest: str, damage: Damage) -> None:
    """Apply ``damage`` to the folder's JSON file ``manifest`` (and its other files) and write it back."""
    path = directory / manifest
    data = json.loads(path.read_text())
    damage(data, directory)
    path.write_text(json.dumps(data))


def assert_refused(
    directory: Path, manifest: str, case: Case, load: Callable[[Path], object], name: str = ""
) -> pytest.ExceptionInfo[Exception]:
    """Damage the folder as ``case`` says; ``load(directory)`` must raise exactly its error class."""
    damage, error, match = case
    damage_manifest(directory, manifest, damage)
    with pytest.raises(error, match=match) as info:
        load(directory)
    assert type(info.value) is error, f"{name}: {type(info.value).__name__}: {info.value}"
    return info
