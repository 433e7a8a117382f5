"""The checkpoint directory contract (training -> export), readable without torch.

A checkpoint directory holds ``checkpoint.json`` and safetensors weight files. Loading
never unpickles. ``facesdk.training.load_checkpoint`` turns it into a torch module;
this module only describes and validates it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ManifestError
from ..preprocess import Preprocess
from ..tasks import TaskSpec, tasks_from_json, tasks_to_json
from .manifest_io import FileEntry, atomic_write_json, read_manifest_json
from .schema import (
    FILE_ENTRY,
    PREPROCESS,
    TASKS,
    Float,
    Int,
    MapOf,
    Obj,
    Str,
    check_task_names,
    field_error,
    member_path,
    validate,
)
from .temperatures import TEMPERATURES_KEY, check_temperatures

__all__ = [
    "CHECKPOINT_MANIFEST",
    "CHECKPOINT_SCHEMA_VERSION",
    "BackboneSpec",
    "HeadSpec",
    "MethodSpec",
    "CheckpointManifest",
    "CHECKPOINT_SCHEMA",
    "check_checkpoint_fields",
    "load_checkpoint_manifest",
]

CHECKPOINT_MANIFEST = "checkpoint.json"
CHECKPOINT_SCHEMA_VERSION = 1
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True, slots=True)
class BackboneSpec:
    """The timm backbone: its name, where its pretrained weights came from, and build kwargs.

    ``weights`` is ``"random"`` (random init), ``"hub"`` (timm ``pretrained=True``) or
    ``"file:<path>"`` (a local safetensors file).
    """

    name: str
    weights: str = "random"
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("backbone name must not be empty")
        if not (self.weights in ("random", "hub") or self.weights.startswith("file:")):
            raise ConfigError(
                f"backbone weights must be 'random', 'hub' or 'file:<path>', got {self.weights!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "weights": self.weights, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackboneSpec:
        return cls(
            name=str(data["name"]),
            weights=str(data.get("weights", "random")),
            kwargs=dict(data.get("kwargs", {})),
        )


@dataclass(frozen=True, slots=True)
class HeadSpec:
    """A classifier head: ``linear`` or ``mlp`` (one hidden layer with GELU)."""

    kind: str = "linear"
    hidden: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "mlp"):
            raise ConfigError(f"head kind must be 'linear' or 'mlp', got {self.kind!r}")
        if self.kind == "mlp" and self.hidden <= 0:
            raise ConfigError(f"an 'mlp' head needs hidden > 0, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"head dropout must be within [0, 1), got {self.dropout}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "hidden": self.hidden, "dropout": self.dropout}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HeadSpec:
        return cls(
            kind=str(data.get("kind", "linear")),
            hidden=int(data.get("hidden", 0)),
            dropout=float(data.get("dropout", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """The adaptation method (``lora``, ``dora``, ``full``, ...) with its full config."""

    name: str
    config: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "config": dict(self.config)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MethodSpec:
        return cls(name=str(data["name"]), config=dict(data.get("config", {})))


HEAD = Obj(
    optional={
        "kind": Str(choices=("linear", "mlp")),
        "hidden": Int(lo=0),
        "dropout": Float(lo=0.0, hi=0.999999),
    }
)
"""One head spec (:class:`HeadSpec`)."""

CHECKPOINT_SCHEMA = Obj(
    required={
        "schema_version": Int(),
        "backbone": Obj(
            required={"name": Str(nonempty=True)},
            optional={
                "weights": Str(pattern=r"random|hub|file:.+", what="'random', 'hub' or 'file:<path>'"),
                "kwargs": MapOf(),
            },
        ),
        "preprocess": PREPROCESS,
        "tasks": TASKS,
        "method": Obj(required={"name": Str(nonempty=True)}, optional={"config": MapOf()}),
        "heads": MapOf(HEAD, min_len=1),
    },
    optional={
        "created": Str(),
        "files": MapOf(FILE_ENTRY),
        "params": MapOf(Int(lo=0)),
        "training": MapOf(),
        "versions": MapOf(),
    },
)
"""``checkpoint.json``; optional top-level fields go into ``CHECKPOINT_SCHEMA.optional``."""

_FIX = "Re-save the checkpoint from training, or correct that field"


def check_checkpoint_fields(data: Mapping[str, Any], where: str) -> None:
    """Validate a raw checkpoint manifest whole; raise a :class:`ManifestError` naming the field."""
    validate(CHECKPOINT_SCHEMA, data, where, _FIX)
    check_task_names(data["tasks"], where, _FIX)
    for i, task in enumerate(data["tasks"]):
        if task["name"] not in data["heads"]:
            raise field_error(where, "heads", f"has no entry for tasks[{i}] {task['name']!r}", _FIX)
    for key, entry in data.get("files", {}).items():
        if key != entry["path"]:
            raise field_error(
                where,
                member_path("files", key),
                f"names the file {entry['path']!r}; it must be {key!r}",
                _FIX,
            )
    if WEIGHTS_FILE not in data.get("files", {}):
        raise field_error(where, "files", f"lists no {WEIGHTS_FILE}", _FIX)


@dataclass(frozen=True, slots=True)
class CheckpointManifest:
    """Everything ``checkpoint.json`` records.

    Attributes:
        backbone: timm name, weights source and build kwargs.
        preprocess: How crops are made and normalised (from the backbone's pretrained config).
        tasks: The tasks and their labels, in head order.
        method: Adaptation method and its config.
        heads: Head spec per task name.
        files: Weight files with sha256 and size (``model.safetensors`` holds the full state dict).
        training: Summary: epochs, steps, best epoch, final validation metrics per task.
        params: ``{"total": n, "trainable": n}``.
        versions: Library versions used to train.
        created: ISO 8601 time of writing.
        temperatures: Optional softmax temperature per task (``facesdk.contract.temperatures``); a task
            not listed, and every task of a checkpoint written before temperatures, has 1.0.
    """

    backbone: BackboneSpec
    preprocess: Preprocess
    tasks: tuple[TaskSpec, ...]
    method: MethodSpec
    heads: Mapping[str, HeadSpec]
    files: Mapping[str, FileEntry] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, int] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    temperatures: Mapping[str, float] = field(default_factory=dict)
    schema_version: int = CHECKPOINT_SCHEMA_VERSION

    def __post_init__(self) -> None:
        missing = [t.name for t in self.tasks if t.name not in self.heads]
        if missing:
            raise ConfigError(f"no head spec for task(s) {missing}")
        names = [t.name for t in self.tasks]
        object.__setattr__(self, "temperatures", check_temperatures(self.temperatures, names, "checkpoint"))

    def temperature(self, task: str) -> float:
        """The softmax temperature of ``task`` (1.0 when none was fitted)."""
        return self.temperatures.get(task, 1.0)

    def to_json(self) -> dict[str, Any]:
        out = {
            "kind": "checkpoint",
            "schema_version": self.schema_version,
            "created": self.created,
            "backbone": self.backbone.to_json(),
            "preprocess": self.preprocess.to_json(),
            "tasks": tasks_to_json(self.tasks),
            "method": self.method.to_json(),
            "heads": {name: head.to_json() for name, head in self.heads.items()},
            "files": {name: entry.to_json() for name, entry in self.files.items()},
            "params": dict(self.params),
            "training": dict(self.training),
            "versions": dict(self.versions),
        }
        if self.temperatures:  # optional: absent means 1.0 for every task
            out[TEMPERATURES_KEY] = dict(self.temperatures)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = CHECKPOINT_MANIFEST) -> CheckpointManifest:
        """Build the manifest from its JSON form, validated whole first (:func:`check_checkpoint_fields`)."""
        check_checkpoint_fields(data, where)
        try:
            return cls(
                schema_version=int(data["schema_version"]),
                created=str(data.get("created", "")),
                backbone=BackboneSpec.from_json(data["backbone"]),
                preprocess=Preprocess.from_json(data["preprocess"]),
                tasks=tasks_from_json(data["tasks"]),
                method=MethodSpec.from_json(data["method"]),
                heads={k: HeadSpec.from_json(v) for k, v in data["heads"].items()},
                files={k: FileEntry.from_json(v) for k, v in data.get("files", {}).items()},
                params=dict(data.get("params", {})),
                training=dict(data.get("training", {})),
                versions=dict(data.get("versions", {})),
                temperatures=data.get(TEMPERATURES_KEY) or {},
            )
        except (KeyError, TypeError, ValueError) as exc:  # ConfigError is a ValueError
            raise ManifestError(f"{where}: {exc}. {_FIX}") from exc

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``checkpoint.json`` atomically into ``directory``."""
        path = Path(directory) / CHECKPOINT_MANIFEST
        atomic_write_json(path, self.to_json())
        return path


def _safetensors_shapes(path: Path) -> dict[str, list[int]] | None:
    """Tensor name -> shape from a safetensors header (no torch), or ``None`` if unreadable."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size <= 1 << 26:
                return None
            header = json.loads(fh.read(size))
        return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _check_head_shapes(directory: Path, manifest: CheckpointManifest) -> None:
    """Each task's label count against its head's output size in the weights (when found)."""
    shapes = _safetensors_shapes(directory / WEIGHTS_FILE)
    if not shapes:
        return  # not a readable header: the sha256 already vouched for the file, torch will say more
    for i, task in enumerate(manifest.tasks):
        pattern = re.compile(rf"(?:^|\.)heads\.{re.escape(task.name)}\.(\d+)\.bias$")
        found = sorted((int(m.group(1)), v) for k, v in shapes.items() if (m := pattern.search(k)))
        if found and found[-1][1] != [task.num_classes]:
            raise ManifestError(
                f"{directory / CHECKPOINT_MANIFEST}: field tasks[{i}].labels lists {task.num_classes} labels for "
                f"{task.name!r} but the head in {WEIGHTS_FILE} has {found[-1][1]} outputs: the manifest does not "
                f"describe these weights. {_FIX}"
            )


def load_checkpoint_manifest(directory: str | os.PathLike[str], verify: bool = True) -> CheckpointManifest:
    """Read and validate a checkpoint directory's manifest.

    Args:
        directory: The checkpoint directory.
        verify: Also check each listed file's size and sha256.

    Raises:
        MissingFileError: The directory, its manifest or a listed file is missing.
        SchemaVersionError: The manifest's schema version is not understood.
        IntegrityError: A file's size or hash differs from the manifest.
    """
    directory = Path(directory)
    if not directory.is_dir():
        from ..errors import MissingFileError

        raise MissingFileError(f"checkpoint directory {directory} does not exist")
    data = read_manifest_json(directory / CHECKPOINT_MANIFEST, "checkpoint", (CHECKPOINT_SCHEMA_VERSION,))
    manifest = CheckpointManifest.from_json(data, str(directory / CHECKPOINT_MANIFEST))
    for entry in manifest.files.values():
        entry.verify(directory, check_hash=verify)
    _check_head_shapes(directory, manifest)
    return manifest
