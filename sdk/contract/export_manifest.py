"""The export directory contract (export -> sdk): ``export.json`` beside the model files.

A lone ``.onnx`` file is self-describing too: the export writes the preprocessing spec,
tasks and a summary into its ``metadata_props`` under the keys in :data:`ONNX_METADATA_KEYS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ManifestError, MissingFileError
from ..preprocess import Preprocess
from ..tasks import TaskSpec, tasks_from_json, tasks_to_json
from .manifest_io import FileEntry, atomic_write_json, read_manifest_json
from .schema import (
    FILE_ENTRY,
    PREPROCESS,
    TASKS,
    Dim,
    Int,
    MapOf,
    Obj,
    Seq,
    Str,
    check_task_names,
    field_error,
    member_path,
    validate,
)
from .temperatures import TEMPERATURES_KEY, check_temperatures

__all__ = [
    "EXPORT_MANIFEST",
    "EXPORT_SCHEMA_VERSION",
    "ONNX_METADATA_KEYS",
    "PRECISIONS",
    "TensorSpec",
    "ModelEntry",
    "ExportManifest",
    "EXPORT_SCHEMA",
    "MODEL_FORMATS",
    "check_export_fields",
    "load_export_manifest",
    "manifest_from_onnx_metadata",
]

EXPORT_MANIFEST = "export.json"
EXPORT_SCHEMA_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
MODEL_FORMATS = ("onnx", "engine")
INPUT_NAME = "input"

ONNX_METADATA_KEYS = {
    "schema_version": "facesdk.schema_version",
    "preprocess": "facesdk.preprocess",
    "tasks": "facesdk.tasks",
    "summary": "facesdk.summary",
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A named model input or output; ``shape`` uses ``"batch"`` for the dynamic axis."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(
            name=str(data["name"]), shape=tuple(data["shape"]), dtype=str(data.get("dtype", "float32"))
        )


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model file of an export: its format, precision and integrity record.

    Attributes:
        file: Name, sha256 and size of the file inside the export directory.
        format: ``"onnx"`` or ``"engine"`` (a serialized TensorRT plan).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        tensorrt: For engines: TensorRT version, GPU name and compute capability.
        extra: Anything else worth recording (calibration reference, quantizer settings).
    """

    file: FileEntry
    format: str
    precision: str
    tensorrt: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in MODEL_FORMATS:
            raise ConfigError(f"model format must be one of {MODEL_FORMATS}, got {self.format!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file.to_json(),
            "format": self.format,
            "precision": self.precision,
        }
        if self.tensorrt is not None:
            out["tensorrt"] = dict(self.tensorrt)
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelEntry:
        return cls(
            file=FileEntry.from_json(data["file"]),
            format=str(data["format"]),
            precision=str(data["precision"]),
            tensorrt=data.get("tensorrt"),
            extra=dict(data.get("extra", {})),
        )


TENSOR = Obj(
    required={"name": Str(nonempty=True), "shape": Seq(Dim(), min_len=1)},
    optional={"dtype": Str(nonempty=True)},
)
"""A model input or output (:class:`TensorSpec`)."""

MODEL_ENTRY = Obj(
    required={"file": FILE_ENTRY, "format": Str(choices=MODEL_FORMATS), "precision": Str(choices=PRECISIONS)},
    optional={"tensorrt": MapOf(), "extra": MapOf()},
)
"""One model file of an export (:class:`ModelEntry`); add optional per-model fields here."""

EXPORT_SCHEMA = Obj(
    required={
        "schema_version": Int(),
        "tasks": TASKS,
        "preprocess": PREPROCESS,
        "input": TENSOR,
        "outputs": Seq(TENSOR, min_len=1),
        "batch": Obj(required={"min": Int(lo=1), "max": Int(lo=1)}),
        "opset": Int(lo=0, hi=1000),
    },
    optional={
        "created": Str(),
        "models": MapOf(MODEL_ENTRY),
        "complexity": MapOf(),
        "parity": MapOf(),
        "source": MapOf(),
        "versions": MapOf(),
    },
)
"""``export.json`` (and the metadata of a lone ``.onnx``); optional top-level fields go into
``EXPORT_SCHEMA.optional`` (see :mod:`facesdk.contract.schema`)."""

_FIX = "Re-create the export with 'facesdk export build', or correct that field"


def check_export_fields(data: Mapping[str, Any], where: str) -> None:
    """Validate a raw export manifest whole: types and ranges, then the fields against each other.

    Raises:
        ManifestError: Naming the first field that is wrong.
    """
    validate(EXPORT_SCHEMA, data, where, _FIX)
    tasks = data["tasks"]
    check_task_names(tasks, where, _FIX)
    if data["batch"]["min"] > data["batch"]["max"]:
        raise field_error(where, "batch", f"must have min <= max, found {dict(data['batch'])}", _FIX)
    h, w = data["preprocess"]["input_size"]
    shape = list(data["input"]["shape"])
    if len(shape) != 4 or shape[1:] != [3, h, w]:
        raise field_error(
            where,
            "input.shape",
            f"is {shape} but preprocess.input_size {[h, w]} needs [batch, 3, {h}, {w}]",
            _FIX,
        )
    names = [o["name"] for o in data["outputs"]]
    if names != [t["name"] for t in tasks]:
        raise field_error(where, "outputs", f"are {names}; they must be the task names in order", _FIX)
    for i, (out, task) in enumerate(zip(data["outputs"], tasks, strict=True)):
        want = len(task["labels"])
        if len(out["shape"]) != 2 or out["shape"][1] != want:
            raise field_error(
                where,
                f"outputs[{i}].shape",
                f"is {list(out['shape'])} but task {task['name']!r} has {want} labels (tasks[{i}].labels)",
                _FIX,
            )
    for key, entry in data.get("models", {}).items():
        expected = f"{entry['format']}-{entry['precision']}"
        if key != expected:
            raise field_error(
                where,
                member_path("models", key),
                f"holds a {expected} model; its key must be {expected!r}",
                _FIX,
            )


@dataclass(frozen=True, slots=True)
class ExportManifest:
    """Everything ``export.json`` records.

    ``models`` maps a key (``"onnx-fp32"``, ``"onnx-int8"``, ``"engine-fp16"``, ...) to its entry;
    :meth:`model_key` builds the key. ``temperatures`` (optional, ``{task: T}``) are the softmax
    temperatures post-processing applies; a task not listed has 1.0. The model files keep raw logits.
    """

    tasks: tuple[TaskSpec, ...]
    preprocess: Preprocess
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    batch: tuple[int, int]
    opset: int
    models: Mapping[str, ModelEntry] = field(default_factory=dict)
    complexity: Mapping[str, Any] = field(default_factory=dict)
    parity: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    temperatures: Mapping[str, float] = field(default_factory=dict)
    schema_version: int = EXPORT_SCHEMA_VERSION

    def __post_init__(self) -> None:
        lo, hi = (int(v) for v in self.batch)
        if not 1 <= lo <= hi:
            raise ConfigError(f"batch range must satisfy 1 <= min <= max, got {self.batch}")
        object.__setattr__(self, "batch", (lo, hi))
        names = [o.name for o in self.outputs]
        tasks = [t.name for t in self.tasks]
        if names != tasks:
            raise ManifestError(f"outputs {names} must be the task names in order {tasks}")
        object.__setattr__(self, "temperatures", check_temperatures(self.temperatures, tasks, "export"))

    def temperature(self, task: str) -> float:
        """The softmax temperature of ``task`` (1.0 when none was fitted)."""
        return self.temperatures.get(task, 1.0)

    @property
    def max_batch(self) -> int:
        return self.batch[1]

    @staticmethod
    def model_key(fmt: str, precision: str) -> str:
        return f"{fmt}-{precision}"

    def model(self, fmt: str, precision: str) -> ModelEntry:
        """Return the entry for a format and precision, or say which ones the export has."""
        key = self.model_key(fmt, precision)
        if key not in self.models:
            raise MissingFileError(
                f"this export has no {fmt} model in {precision}; it has: {', '.join(sorted(self.models)) or 'none'}. "
                f"Re-run 'facesdk export build' with --precision {precision}"
            )
        return self.models[key]

    def to_json(self) -> dict[str, Any]:
        out = {
            "kind": "export",
            "schema_version": self.schema_version,
            "created": self.created,
            "tasks": tasks_to_json(self.tasks),
            "preprocess": self.preprocess.to_json(),
            "input": self.input.to_json(),
            "outputs": [o.to_json() for o in self.outputs],
            "batch": {"min": self.batch[0], "max": self.batch[1]},
            "opset": self.opset,
            "models": {k: v.to_json() for k, v in self.models.items()},
            "complexity": dict(self.complexity),
            "parity": dict(self.parity),
            "source": dict(self.source),
            "versions": dict(self.versions),
        }
        if self.temperatures:  # optional: absent means 1.0 for every task
            out[TEMPERATURES_KEY] = dict(self.temperatures)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = EXPORT_MANIFEST) -> ExportManifest:
        """Build the manifest from its JSON form, validated whole first (:func:`check_export_fields`)."""
        check_export_fields(data, where)
        try:
            return cls(
                schema_version=int(data["schema_version"]),
                created=str(data.get("created", "")),
                tasks=tasks_from_json(data["tasks"]),
                preprocess=Preprocess.from_json(data["preprocess"]),
                input=TensorSpec.from_json(data["input"]),
                outputs=tuple(TensorSpec.from_json(o) for o in data["outputs"]),
                batch=(int(data["batch"]["min"]), int(data["batch"]["max"])),
                opset=int(data["opset"]),
                models={k: ModelEntry.from_json(v) for k, v in data.get("models", {}).items()},
                complexity=dict(data.get("complexity", {})),
                parity=dict(data.get("parity", {})),
                source=dict(data.get("source", {})),
                versions=dict(data.get("versions", {})),
                temperatures=data.get(TEMPERATURES_KEY) or {},
            )
        except (KeyError, TypeError, ValueError) as exc:  # ConfigError is a ValueError
            raise ManifestError(f"{where}: {exc}. {_FIX}") from exc

    def write(self, directory: str | os.PathLike[str]) -> Path:
        path = Path(directory) / EXPORT_MANIFEST
        atomic_write_json(path, self.to_json())
        return path

    def onnx_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` that make a lone ONNX file self-describing."""
        summary = {
            "input": self.input.to_json(),
            "outputs": [o.to_json() for o in self.outputs],
            "batch": {"min": self.batch[0], "max": self.batch[1]},
            "opset": self.opset,
            "source": dict(self.source),
            "complexity": dict(self.complexity),
        }
        if self.temperatures:
            summary[TEMPERATURES_KEY] = dict(self.temperatures)
        return {
            ONNX_METADATA_KEYS["schema_version"]: str(self.schema_version),
            ONNX_METADATA_KEYS["preprocess"]: json.dumps(self.preprocess.to_json()),
            ONNX_METADATA_KEYS["tasks"]: json.dumps(tasks_to_json(self.tasks)),
            ONNX_METADATA_KEYS["summary"]: json.dumps(summary),
        }


def load_export_manifest(directory: str | os.PathLike[str], verify: bool = True) -> ExportManifest:
    """Read and validate an export directory; with ``verify``, check every model file's hash."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingFileError(f"export directory {directory} does not exist")
    data = read_manifest_json(directory / EXPORT_MANIFEST, "export", (EXPORT_SCHEMA_VERSION,))
    manifest = ExportManifest.from_json(data, str(directory / EXPORT_MANIFEST))
    for entry in manifest.models.values():
        entry.file.verify(directory, check_hash=verify)
    return manifest


def manifest_from_onnx_metadata(
    metadata: Mapping[str, str], source: str, input_shape: Sequence[int | str] | None = None
) -> ExportManifest:
    """Rebuild the manifest fields of a lone ONNX file from its ``metadata_props``.

    Args:
        metadata: The ONNX model's custom metadata map.
        source: The file's path, for error messages.
        input_shape: Unused; kept for callers that want to cross-check.
    """
    keys = ONNX_METADATA_KEYS
    missing = [k for k in (keys["preprocess"], keys["tasks"], keys["summary"]) if k not in metadata]
    if missing:
        raise ManifestError(
            f"{source} carries no facesdk metadata (missing {missing}); it was not written by "
            "'facesdk export build'. Use the export directory, or re-export the model."
        )
    version = metadata.get(keys["schema_version"])
    if version != str(EXPORT_SCHEMA_VERSION):
        from ..errors import SchemaVersionError

        raise SchemaVersionError(
            f"{source} has export schema version {version!r} in its metadata; this facesdk reads {EXPORT_SCHEMA_VERSION}"
        )
    try:
        summary = json.loads(metadata[keys["summary"]])
        data = {
            "schema_version": EXPORT_SCHEMA_VERSION,
            "tasks": json.loads(metadata[keys["tasks"]]),
            "preprocess": json.loads(metadata[keys["preprocess"]]),
        }
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{source}: the facesdk metadata is not valid JSON ({exc}); re-export the model"
        ) from exc
    if not isinstance(summary, dict):
        raise ManifestError(
            f"{source}: metadata {keys['summary']} must be a JSON object; re-export the model"
        )
    for name in ("input", "outputs", "batch", "opset", "source", "complexity", TEMPERATURES_KEY):
        if name in summary:
            data[name] = summary[name]
    return ExportManifest.from_json(data, f"{source} (ONNX metadata)")
