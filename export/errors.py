"""Errors raised by the export stage (all in the :class:`~facesdk.errors.FaceSdkError` family)."""

from __future__ import annotations

from facesdk.errors import FaceSdkError

__all__ = ["ExportError", "ParityError"]


class ExportError(FaceSdkError, RuntimeError):
    """An export step failed (ONNX export, check, conversion or engine build)."""


class ParityError(ExportError):
    """Two forms of the model disagree beyond the stated tolerance; nothing was written."""
