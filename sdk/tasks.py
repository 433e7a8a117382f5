"""Task and label definitions shared by every stage."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = [
    "TaskSpec",
    "AGE",
    "GENDER",
    "EMOTION",
    "DEFAULT_TASKS",
    "MISSING",
    "tasks_to_json",
    "tasks_from_json",
]

MISSING = -1
"""Label value that marks a missing label in manifests and tensors."""


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One classification task: its name and its ordered class labels."""

    name: str
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ConfigError(f"task name must be a non-empty identifier, got {self.name!r}")
        if len(self.labels) < 2:
            raise ConfigError(f"task {self.name!r} needs at least 2 labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"task {self.name!r} has duplicate labels: {list(self.labels)}")
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        """Return the class index of ``label`` or raise a :class:`ConfigError`."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise ConfigError(
                f"{label!r} is not a label of task {self.name!r}; expected one of {list(self.labels)}"
            ) from None

    def check_index(self, value: int) -> int:
        """Validate a class index; ``MISSING`` (-1) passes through."""
        if value != MISSING and not 0 <= value < self.num_classes:
            raise ConfigError(
                f"label {value} is out of range for task {self.name!r} "
                f"(expected 0..{self.num_classes - 1}, or {MISSING} for missing)"
            )
        return value

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "labels": list(self.labels)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskSpec:
        try:
            return cls(name=str(data["name"]), labels=tuple(data["labels"]))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"a task needs 'name' and 'labels', got {dict(data)!r}") from exc


AGE = TaskSpec("age", ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+"))
GENDER = TaskSpec("gender", ("male", "female"))
EMOTION = TaskSpec("emotion", ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"))
DEFAULT_TASKS: tuple[TaskSpec, ...] = (AGE, GENDER, EMOTION)

AGE_BIN_EDGES: tuple[int, ...] = (3, 10, 20, 30, 40, 50, 60, 70)
"""Lower bounds of age bins 1..8: an age ``a`` falls in bin ``sum(a >= e for e in edges)``."""


def age_to_group(age: float) -> int:
    """Map a numeric age in years to its FairFace bin index (0..8)."""
    if age < 0:
        raise ConfigError(f"age must be >= 0, got {age}")
    return sum(age >= edge for edge in AGE_BIN_EDGES)


def tasks_to_json(tasks: Iterable[TaskSpec]) -> list[dict[str, Any]]:
    return [t.to_json() for t in tasks]


def tasks_from_json(data: Sequence[Mapping[str, Any]]) -> tuple[TaskSpec, ...]:
    tasks = tuple(TaskSpec.from_json(d) for d in data)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate task names: {names}")
    if not tasks:
        raise ConfigError("at least one task is required")
    return tasks
