"""The facesdk error family.

Every error the SDK, training, export and calibration raise on purpose is a
:class:`FaceSdkError`. Messages say what was expected, what was found and what to do.
"""

from __future__ import annotations

__all__ = [
    "FaceSdkError",
    "ConfigError",
    "ManifestError",
    "SchemaVersionError",
    "MissingFileError",
    "IntegrityError",
    "DependencyError",
    "DetectorNotFoundError",
    "InvalidFrameError",
    "BackendError",
    "ModelMismatchError",
    "SourceError",
]


class FaceSdkError(Exception):
    """Base class of every error raised on purpose by facesdk."""


class ConfigError(FaceSdkError, ValueError):
    """A setting, option or configuration value is invalid."""


class ManifestError(FaceSdkError):
    """A checkpoint or export manifest is missing, unreadable or inconsistent."""


class SchemaVersionError(ManifestError):
    """A manifest carries a schema version this release does not understand."""


class MissingFileError(ManifestError, FileNotFoundError):
    """A file that a manifest or a user named does not exist."""


class IntegrityError(ManifestError):
    """A file's sha256 or size differs from what its manifest records."""


class DependencyError(FaceSdkError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class DetectorNotFoundError(FaceSdkError, FileNotFoundError):
    """The face detector model could not be found."""


class InvalidFrameError(FaceSdkError, ValueError):
    """A frame is not an image the SDK can analyse."""


class BackendError(FaceSdkError, RuntimeError):
    """An inference backend is unavailable or rejected the model."""


class ModelMismatchError(ManifestError, BackendError):
    """A manifest and the model file it describes disagree (input size, label counts, names)."""


class SourceError(FaceSdkError, OSError):
    """A video source (camera, file, URL) cannot be opened or read."""


def require(module: str, extra: str, purpose: str):  # noqa: ANN201 - returns a module
    """Import an optional dependency or raise a :class:`DependencyError` naming the extra.

    Args:
        module: Module to import, e.g. ``"torch"``.
        extra: The ``facesdk`` extra that installs it, e.g. ``"train"``.
        purpose: What the caller needs it for, shown in the message.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(
            f"{purpose} needs the Python package {module!r}, which is not installed "
            f"({exc}). Install it with: pip install 'facesdk[{extra}]'"
        ) from exc
