"""facesdk: age group, gender and emotion from camera streams.

``from facesdk import Analyzer`` is the runtime entry point. Importing ``facesdk``
never imports torch; heavy parts load lazily when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    BackendError,
    ConfigError,
    DependencyError,
    DetectorNotFoundError,
    FaceSdkError,
    IntegrityError,
    InvalidFrameError,
    ManifestError,
    MissingFileError,
    SchemaVersionError,
    SourceError,
)
from .preprocess import CropPolicy, Preprocess
from .results import Detection, FaceResult, FrameResult, Prediction, Quality
from .tasks import AGE, DEFAULT_TASKS, EMOTION, GENDER, TaskSpec

if TYPE_CHECKING:
    from .analyzer import Analyzer

__version__ = "0.1.0"

__all__ = [
    "Analyzer",
    "AGE",
    "BackendError",
    "ConfigError",
    "CropPolicy",
    "DEFAULT_TASKS",
    "DependencyError",
    "Detection",
    "DetectorNotFoundError",
    "EMOTION",
    "FaceResult",
    "FaceSdkError",
    "FrameResult",
    "GENDER",
    "IntegrityError",
    "InvalidFrameError",
    "ManifestError",
    "MissingFileError",
    "Prediction",
    "Preprocess",
    "Quality",
    "SchemaVersionError",
    "SourceError",
    "TaskSpec",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "Analyzer":
        from .analyzer import Analyzer

        return Analyzer
    raise AttributeError(f"module 'facesdk' has no attribute {name!r}")
