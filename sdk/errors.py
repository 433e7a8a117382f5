"""The facesdk error family, and how every command turns it into one line and an exit code.

Every error the SDK, training, export and calibration raise on purpose is a
:class:`FaceSdkError`. Messages say what was expected, what was found and what to do.
:func:`run_guarded` runs a command-line entry point so that none ends in a traceback for a
user's mistake (a leaf, so any module's ``__main__`` can use it without an import cycle).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = [
    "EXIT_USAGE",
    "run_guarded",
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


EXIT_USAGE = 2
"""Exit code of every user error (bad option, bad or missing file, refused output) in every command."""


def _one_line(exc: BaseException) -> str:
    """The error's message on one line (a message never spans lines on the terminal)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def run_guarded(prog: str, call: Callable[[], int | None]) -> int:
    """Run a command, turning the project's errors into one line on stderr and an exit code.

    Every entry point goes through here: the ``facesdk`` subcommands and each ``python -m
    facesdk...`` module, so none ends in a traceback for a user's mistake.

    Args:
        prog: The command's name as the user typed it (``facesdk analyze``,
            ``python -m facesdk.auto``); each line starts with it.
        call: Runs the command and returns its exit code (``None`` for 0).

    Returns:
        The command's exit code; :data:`EXIT_USAGE` for a :class:`FaceSdkError` or an
        ``OSError`` on a path; 130 for Ctrl-C.
    """
    try:
        return int(call() or 0)
    except FaceSdkError as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a path the user named cannot be read or written (permissions, disk full, ...)
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(
            f"{prog}: error: {exc.strerror or exc}{where}; check the path, its permissions and free space",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
