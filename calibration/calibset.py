"""The calibration set on disk: ``calib.json`` plus float32 shards, written by ``collect``.

Layout of a calibration directory::

    calib.json             manifest (kind "calibration", schema version, preprocessing spec
                           and fingerprint, sources, counts, one entry per shard)
    crops-00000.npy        float32 N x 3 x H x W, the model input exactly as the runtime
                           builds it (``facesdk.preprocess.to_input_tensor``)
    labels-00000.npy       int64 N x T class indices, one column per task, -1 = missing

Shards hold the preprocessed float32 tensor rather than uint8 crops: the ONNX Runtime and
TensorRT calibrators feed them without OpenCV or the preprocessing code, and the bytes the
calibrator sees are hashed in the manifest. The preprocessing fingerprint binds them to one
spec; a model with another spec refuses the set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.contract.manifest_io import FileEntry, atomic_write_json, read_manifest_json
from facesdk.contract.schema import (
    FILE_ENTRY,
    PREPROCESS,
    Bool,
    Int,
    MapOf,
    Obj,
    Seq,
    Str,
    field_error,
    validate,
)
from facesdk.errors import ManifestError
from facesdk.preprocess import Preprocess

__all__ = [
    "CALIB_MANIFEST",
    "CALIB_SCHEMA_VERSION",
    "CALIB_SCHEMA",
    "CalibrationSet",
    "Shard",
    "check_fingerprint",
    "load_calibration_set",
]

CALIB_MANIFEST = "calib.json"
CALIB_SCHEMA_VERSION = 1

SHARD = Obj(
    required={"crops": FILE_ENTRY, "labels": FILE_ENTRY, "count": Int(lo=0), "plan_end": Int(lo=0)},
    optional={"no_face": Int(lo=0)},
)
CALIB_SCHEMA = Obj(
    required={
        "schema_version": Int(),
        "preprocess": PREPROCESS,
        "tasks": Seq(Str(nonempty=True), min_len=1, unique=True),
        "sources": Seq(MapOf()),
        "shards": Seq(SHARD),
        "target": Int(lo=0),
        "plan_id": Str(),
    },
    optional={
        "complete": Bool(),
        "count": Int(lo=0),
        "frames": MapOf(Int(lo=0)),
        "preprocess_fingerprint": Str(pattern=r"[0-9a-f]{64}", what="64 lowercase hex digits"),
    },
)
"""``calib.json``; optional fields go into ``CALIB_SCHEMA.optional``."""

_FIX = "Re-run 'facesdk calibrate collect' into a new folder, or correct that field"


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard: its crops and labels files and where it ends in the collection plan."""

    crops: FileEntry
    labels: FileEntry
    count: int
    plan_end: int
    no_face: int

    def to_json(self) -> dict[str, Any]:
        return {
            "crops": self.crops.to_json(),
            "labels": self.labels.to_json(),
            "count": self.count,
            "plan_end": self.plan_end,
            "no_face": self.no_face,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shard:
        return cls(
            crops=FileEntry.from_json(data["crops"]),
            labels=FileEntry.from_json(data["labels"]),
            count=int(data["count"]),
            plan_end=int(data["plan_end"]),
            no_face=int(data.get("no_face", 0)),
        )


@dataclass(frozen=True, slots=True)
class CalibrationSet:
    """What ``calib.json`` records.

    Attributes:
        preprocess: The spec the crops were made with.
        tasks: Task names, the column order of the label shards.
        sources: One record per source (path, kind, planned items, crops taken).
        shards: Complete shards in order.
        target: Number of crops asked for.
        plan_id: Hash of the collection plan (sources, count, spec); resuming needs the same.
        complete: ``False`` while a collection is in progress or was interrupted.
        frames: Frames read and frames with no face, over the whole collection.
    """

    preprocess: Preprocess
    tasks: tuple[str, ...]
    sources: tuple[Mapping[str, Any], ...]
    shards: tuple[Shard, ...]
    target: int
    plan_id: str
    complete: bool = False
    frames: Mapping[str, int] = field(default_factory=dict)
    schema_version: int = CALIB_SCHEMA_VERSION

    @property
    def count(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def fingerprint(self) -> str:
        return self.preprocess.fingerprint()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "calibration",
            "schema_version": self.schema_version,
            "complete": self.complete,
            "count": self.count,
            "target": self.target,
            "plan_id": self.plan_id,
            "preprocess": self.preprocess.to_json(),
            "preprocess_fingerprint": self.fingerprint,
            "tasks": list(self.tasks),
            "frames": dict(self.frames),
            "sources": [dict(s) for s in self.sources],
            "shards": [s.to_json() for s in self.shards],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = CALIB_MANIFEST) -> CalibrationSet:
        validate(CALIB_SCHEMA, data, where, _FIX)
        if "count" in data and data["count"] != sum(s["count"] for s in data["shards"]):
            raise field_error(
                where, "count", f"is {data['count']} but the shards hold a different number", _FIX
            )
        try:
            out = cls(
                preprocess=Preprocess.from_json(data["preprocess"]),
                tasks=tuple(data["tasks"]),
                sources=tuple(data["sources"]),
                shards=tuple(Shard.from_json(s) for s in data["shards"]),
                target=int(data["target"]),
                plan_id=str(data["plan_id"]),
                complete=bool(data.get("complete", False)),
                frames=dict(data.get("frames", {})),
                schema_version=int(data["schema_version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(
                f"{where} lacks or garbles the field {exc}; re-run 'facesdk calibrate collect'"
            ) from exc
        recorded = data.get("preprocess_fingerprint")
        if recorded is not None and recorded != out.fingerprint:
            raise ManifestError(
                f"{where} records preprocessing fingerprint {recorded} but its spec hashes to {out.fingerprint}: "
                "the manifest was edited; re-collect the calibration set"
            )
        return out

    def write(self, directory: str | os.PathLike[str]) -> Path:
        path = Path(directory) / CALIB_MANIFEST
        atomic_write_json(path, self.to_json())
        return path

    def iter_shards(self, directory: str | os.PathLike[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(crops, labels)`` per shard, memory-mapped (read-only)."""
        for shard in self.shards:
            crops = np.load(Path(directory) / shard.crops.path, mmap_mode="r", allow_pickle=False)
            labels = np.load(Path(directory) / shard.labels.path, mmap_mode="r", allow_pickle=False)
            yield crops, labels

    def arrays(self, directory: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
        """All crops (N x 3 x H x W float32) and labels (N x T int64) in one pair of arrays."""
        pairs = list(self.iter_shards(directory))
        if not pairs:
            h, w = self.preprocess.input_size
            return np.empty((0, 3, h, w), np.float32), np.empty((0, len(self.tasks)), np.int64)
        return np.concatenate([c for c, _ in pairs]), np.concatenate([lab for _, lab in pairs])


def _check_shard_shapes(calib: CalibrationSet, directory: Path) -> None:
    """Each shard's arrays (headers only) against the spec's input size and the task count."""
    h, w = calib.preprocess.input_size
    where = str(directory / CALIB_MANIFEST)
    for i, shard in enumerate(calib.shards):
        expect = {"crops": (shard.count, 3, h, w), "labels": (shard.count, len(calib.tasks))}
        for part in ("crops", "labels"):
            path = directory / getattr(shard, part).path
            try:
                shape = tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
            except (OSError, ValueError) as exc:
                raise ManifestError(f"{path} is not a readable .npy array ({exc}). {_FIX}") from exc
            if shape != expect[part]:
                raise field_error(
                    where,
                    f"shards[{i}].{part}",
                    f"holds an array of shape {list(shape)}; count, preprocess.input_size and tasks "
                    f"need {list(expect[part])}",
                    _FIX,
                )


def load_calibration_set(
    directory: str | os.PathLike[str], verify: bool = True, require_complete: bool = True
) -> CalibrationSet:
    """Read ``calib.json`` and check every shard's size (and sha256 with ``verify``)."""
    directory = Path(directory)
    data = read_manifest_json(directory / CALIB_MANIFEST, "calibration", (CALIB_SCHEMA_VERSION,))
    calib = CalibrationSet.from_json(data, str(directory / CALIB_MANIFEST))
    if require_complete and not calib.complete:
        raise ManifestError(
            f"the calibration set in {directory} is incomplete ({calib.count} of {calib.target} crops): "
            "a collection was interrupted; re-run the same 'facesdk calibrate collect' command to finish it"
        )
    for shard in calib.shards:
        shard.crops.verify(directory, check_hash=verify)
        shard.labels.verify(directory, check_hash=verify)
    _check_shard_shapes(calib, directory)
    return calib


def check_fingerprint(calib: CalibrationSet, preprocess: Preprocess, where: str | os.PathLike[str]) -> None:
    """Refuse a calibration set made with another preprocessing spec than the model's."""
    if calib.fingerprint != preprocess.fingerprint():
        raise ManifestError(
            f"calibration set {where} was collected with preprocessing fingerprint {calib.fingerprint} "
            f"({calib.preprocess.to_json()}), but the model expects {preprocess.fingerprint()} "
            f"({preprocess.to_json()}). Re-collect it with 'facesdk calibrate collect --model <the export>'"
        )
