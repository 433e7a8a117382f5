"""Reading and writing the JSON manifests that join the stages: file entries, versions.

``sha256_file``, ``atomic_write_bytes`` and ``atomic_write_json`` live in :mod:`facesdk.contract.fileio` and are
re-exported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, ManifestError, MissingFileError, SchemaVersionError
from .fileio import atomic_write_bytes, atomic_write_json, sha256_file
from .integrity import cached_sha256

__all__ = [
    "FileEntry",
    "check_plain_name",
    "sha256_file",
    "atomic_write_bytes",
    "atomic_write_json",
    "read_manifest_json",
]


def check_plain_name(name: object) -> bool:
    """True for a plain file name inside its folder: no separators, no ``..``, not absolute."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\x00")
        and not (len(name) > 1 and name[1] == ":")
    )


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file of a checkpoint or export directory with its size and sha256."""

    path: str
    sha256: str
    size: int

    @classmethod
    def of(cls, directory: str | os.PathLike[str], name: str) -> FileEntry:
        """Describe the existing file ``directory/name``."""
        full = Path(directory) / name
        return cls(path=name, sha256=sha256_file(full), size=full.stat().st_size)

    def verify(self, directory: str | os.PathLike[str], check_hash: bool = True) -> Path:
        """Check that the file exists with the recorded size (and hash); return its path."""
        if not check_plain_name(self.path):
            raise ManifestError(
                f"the manifest in {directory} names the file {self.path!r}: expected a plain file name inside "
                "that folder (no separators, no '..', not absolute); the manifest was edited: rebuild the directory"
            )
        full = Path(directory) / self.path
        if not full.is_file():
            raise MissingFileError(f"{full} is missing; the manifest in {directory} lists it")
        size = full.stat().st_size
        if size != self.size:
            raise IntegrityError(
                f"{full} has {size} bytes but its manifest records {self.size}: the file is corrupt or was "
                "replaced; rebuild the directory"
            )
        if check_hash:
            digest = cached_sha256(full)
            if digest != self.sha256:
                raise IntegrityError(
                    f"{full} has sha256 {digest[:16]}… but its manifest records {self.sha256[:16]}…: the file is "
                    "corrupt or was replaced; rebuild the directory"
                )
        return full

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileEntry:
        try:
            return cls(path=str(data["path"]), sha256=str(data["sha256"]), size=int(data["size"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"a file entry needs path, sha256 and size; got {dict(data)!r}") from exc


def read_manifest_json(path: str | os.PathLike[str], kind: str, supported: tuple[int, ...]) -> dict[str, Any]:
    """Read a manifest, check its ``kind`` and ``schema_version``, and return the raw mapping.

    Args:
        path: The manifest file.
        kind: Expected value of the manifest's ``kind`` field (``"checkpoint"`` or ``"export"``).
        supported: Schema versions this release reads.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist: expected a facesdk {kind} manifest there")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); the {kind} directory is corrupt") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path} must hold a JSON object, found {type(data).__name__}")
    found_kind = data.get("kind")
    if found_kind != kind:
        raise ManifestError(f"{path} is a {found_kind!r} manifest; expected a {kind!r} manifest")
    version = data.get("schema_version")
    if version not in supported:
        raise SchemaVersionError(
            f"{path} has {kind} schema version {version!r}; this facesdk reads version(s) "
            f"{', '.join(map(str, supported))}. Upgrade facesdk or re-create the {kind} with this release."
        )
    return data
