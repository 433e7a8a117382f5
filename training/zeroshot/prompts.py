"""Zero-shot prompt sets: per task, per class, an ensemble of templates x phrases.

The defaults (``prompts.yaml`` in this package) cover age group, gender and emotion; a
user file adds tasks or replaces default ones. Files are read with YAML 1.2 booleans (a
class named ``no`` or ``yes`` stays a string) and duplicate keys are an error, not a
silent overwrite.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from facesdk.errors import ConfigError, MissingFileError
from facesdk.tasks import DEFAULT_TASKS, TaskSpec

__all__ = ["TaskPrompts", "PromptSet", "load_prompts", "parse_prompts", "DEFAULT_PROMPTS"]

DEFAULT_PROMPTS = "prompts.yaml"
"""The default prompt file, shipped inside ``facesdk.training.zeroshot``."""

_TOP_KEYS = {"templates", "tasks", "include_defaults"}
_TASK_KEYS = {"templates", "classes"}


@dataclass(frozen=True, slots=True)
class TaskPrompts:
    """One task's prompts: its templates and, per class (in head order), its phrases."""

    name: str
    templates: tuple[str, ...]
    classes: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def task(self) -> TaskSpec:
        return TaskSpec(self.name, tuple(label for label, _ in self.classes))

    def prompts(self, label: str) -> list[str]:
        """Every prompt of one class: each template filled with each phrase."""
        phrases = dict(self.classes)[label]
        return [template.replace("{}", phrase) for template in self.templates for phrase in phrases]

    def to_json(self) -> dict[str, Any]:
        return {
            "templates": list(self.templates),
            "classes": {label: list(phrases) for label, phrases in self.classes},
        }


@dataclass(frozen=True, slots=True)
class PromptSet:
    """The prompts of every task, in task order."""

    tasks: tuple[TaskPrompts, ...]

    @property
    def task_specs(self) -> tuple[TaskSpec, ...]:
        return tuple(t.task for t in self.tasks)

    def to_json(self) -> dict[str, Any]:
        """The fully resolved prompts (what a checkpoint records to be reproducible)."""
        return {"tasks": {t.name: t.to_json() for t in self.tasks}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PromptSet:
        return parse_prompts({"include_defaults": False, **dict(data)}, source="checkpoint")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false) that refuses duplicate keys."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            line = key_node.start_mark.line + 1
            raise ConfigError(f"duplicate key {key!r} at line {line}: every class and task must appear once")
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def _read_yaml(path: Path) -> Mapping[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    except ConfigError as exc:  # a duplicate key: say in which file
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} must hold a mapping with 'tasks' (and optional 'templates')")
    return data


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{what} must be a list of strings, got {value!r}")
    items = tuple(value)
    if not items:
        raise ConfigError(f"{what} is empty: give at least one")
    bad = [v for v in items if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ConfigError(f"{what} must hold non-empty strings, got {bad}")
    return items


def _parse_task(name: Any, data: Any, templates: tuple[str, ...] | None, source: str) -> TaskPrompts:
    where = f"{source}: task {name!r}"
    if not isinstance(name, str):
        raise ConfigError(f"{where}: task names must be strings (quote it in YAML)")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping with 'classes' (and optional 'templates')")
    unknown = sorted(map(str, set(data) - _TASK_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; known: {sorted(_TASK_KEYS)}")
    if "templates" in data:
        templates = _strings(data["templates"], f"{where}: templates")
    if templates is None:
        raise ConfigError(
            f"{where} has no templates and the file gives no default 'templates' (include_defaults is false)"
        )
    missing = [t for t in templates if "{}" not in t]
    if missing:
        raise ConfigError(f"{where}: every template needs '{{}}' for the phrase; these lack it: {missing}")
    classes = data.get("classes")
    if not isinstance(classes, Mapping) or not classes:
        raise ConfigError(f"{where} needs 'classes': a mapping of label -> list of phrases")
    parsed = []
    for label, phrases in classes.items():
        if not isinstance(label, str):
            raise ConfigError(f"{where}: class {label!r} must be a string label (quote it in YAML)")
        parsed.append((label, _strings(phrases, f"{where}: phrases of class {label!r}")))
    prompts = TaskPrompts(name, tuple(templates), tuple(parsed))
    task = prompts.task  # validates the name and the labels
    default = {t.name: t for t in DEFAULT_TASKS}.get(name)
    if default is not None and task.labels != default.labels:
        raise ConfigError(
            f"{where}: facesdk's {name!r} task has the classes {list(default.labels)} (in that order), "
            f"the file gives {list(task.labels)}; use another task name for a different label set"
        )
    return prompts


def parse_prompts(data: Mapping[str, Any], source: str = "<prompts>") -> PromptSet:
    """Validate a prompts mapping (the YAML's content) and merge it onto the defaults.

    Raises:
        ConfigError: An unknown option, a duplicate or empty class, a template without ``{}``.
    """
    unknown = sorted(map(str, set(data) - _TOP_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown option(s) {unknown}; known: {sorted(_TOP_KEYS)}")
    include = data.get("include_defaults", True)
    if not isinstance(include, bool):
        raise ConfigError(f"{source}: include_defaults must be true or false, got {include!r}")
    templates = _strings(data["templates"], f"{source}: templates") if "templates" in data else None
    if templates is None and include:
        templates = _default_templates()  # a file merged onto the defaults inherits their templates
    tasks_data = data.get("tasks")
    if not isinstance(tasks_data, Mapping) or not tasks_data:
        raise ConfigError(f"{source} needs 'tasks': a mapping of task name -> {{classes: ...}}")
    tasks = {name: _parse_task(name, spec, templates, source) for name, spec in tasks_data.items()}
    if include:
        merged = {t.name: t for t in _default_prompts().tasks}
        merged.update(tasks)
        tasks = merged
    return PromptSet(tuple(tasks.values()))


def _default_data() -> Mapping[str, Any]:
    text = resources.files(__package__).joinpath(DEFAULT_PROMPTS).read_text(encoding="utf-8")
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)


def _default_templates() -> tuple[str, ...]:
    return _strings(_default_data()["templates"], f"{__package__}/{DEFAULT_PROMPTS}: templates")


def _default_prompts() -> PromptSet:
    data = _default_data()
    return parse_prompts({**data, "include_defaults": False}, source=f"{__package__}/{DEFAULT_PROMPTS}")


def load_prompts(path: str | os.PathLike[str] | None = None) -> PromptSet:
    """The default prompts, or a prompts file merged onto them (see the module docstring).

    Raises:
        MissingFileError: ``path`` does not exist.
        ConfigError: The file is invalid; the message says where and what to change.
    """
    if path is None:
        return _default_prompts()
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"prompts file {path} does not exist")
    return parse_prompts(_read_yaml(path), source=str(path))
