"""Whole-manifest validation: every field's type and range, checked before anything is built.

A manifest (``export.json``, ``checkpoint.json``, ``calib.json``, the metadata of a lone
``.onnx``) is checked against a small declarative schema before its dataclasses are built, so a
wrong type or an out-of-range value is one :class:`ManifestError` that names the field
(``preprocess.mean``, ``tasks[1].labels``, ``models.onnx-fp32.file.path``) instead of a
traceback or a garbled message.

Adding an optional field is one line: put it into the ``optional`` mapping of the right
:class:`Obj`, e.g. a per-task temperature in :data:`TASK`::

    TASK.optional["temperature"] = Float(gt=0.0)   # or edit the TASK definition itself

Unknown fields are allowed (a newer facesdk may add optional fields that older readers ignore);
a field that old readers would misread needs a schema version bump instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ManifestError
from ..preprocess import CROP_KINDS, INTERPOLATIONS, SUPPORTED_ALIGN_VERSIONS
from .manifest_io import check_plain_name

__all__ = [
    "Spec",
    "Anything",
    "Bool",
    "Int",
    "Float",
    "Str",
    "FileName",
    "Dim",
    "Seq",
    "MapOf",
    "Obj",
    "validate",
    "TASK",
    "PREPROCESS",
    "CROP",
    "FILE_ENTRY",
    "check_plain_name",
    "member_path",
]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def member_path(path: str, key: Any) -> str:
    """``path.key``, with a key that is not a plain word shown as ``path['key']`` (escaped)."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_.+-]+", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


class _Invalid(Exception):
    """Internal: a value does not match; carries the dotted path and what was expected."""

    def __init__(self, path: str, expected: str, value: Any) -> None:
        super().__init__(path)
        self.path, self.expected, self.value = path, expected, value


class Spec:
    """A field's expected type and range."""

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, value: Any, path: str) -> None:
        """Raise ``_Invalid`` when ``value`` does not match."""
        raise NotImplementedError


@dataclass(frozen=True)
class Anything(Spec):
    """Any JSON value (free-form records: versions, parity figures)."""

    def describe(self) -> str:
        return "any value"

    def check(self, value: Any, path: str) -> None:
        return None


@dataclass(frozen=True)
class Bool(Spec):
    def describe(self) -> str:
        return "true or false"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise _Invalid(path, self.describe(), value)


@dataclass(frozen=True)
class Int(Spec):
    """An integer (not a bool) within ``[lo, hi]``, or one of ``choices``."""

    lo: int | None = None
    hi: int | None = None
    choices: tuple[int, ...] | None = None
    what: str = ""

    def describe(self) -> str:
        if self.what:
            return self.what
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.lo is not None and self.hi is not None:
            return f"an integer in [{self.lo}, {self.hi}]"
        if self.lo is not None:
            return f"an integer >= {self.lo}"
        return "an integer"

    def check(self, value: Any, path: str) -> None:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (self.choices is None or value in self.choices)
        ok = ok and (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)
        if not ok:
            raise _Invalid(path, self.describe(), value)


@dataclass(frozen=True)
class Float(Spec):
    """A finite number (int or float, not bool) within ``[lo, hi]`` and above ``gt``."""

    lo: float | None = None
    hi: float | None = None
    gt: float | None = None

    def describe(self) -> str:
        parts = []
        if self.gt is not None:
            parts.append(f"> {self.gt:g}")
        if self.lo is not None:
            parts.append(f">= {self.lo:g}")
        if self.hi is not None:
            parts.append(f"<= {self.hi:g}")
        return "a finite number" + (f" {' and '.join(parts)}" if parts else "")

    def check(self, value: Any, path: str) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (self.gt is None or value > self.gt)
        ok = ok and (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)
        if not ok:
            raise _Invalid(path, self.describe(), value)


@dataclass(frozen=True)
class Str(Spec):
    """A string, optionally non-empty, one of ``choices`` or matching ``pattern`` (full match)."""

    choices: tuple[str, ...] | None = None
    nonempty: bool = False
    pattern: str | None = None
    what: str = ""

    def describe(self) -> str:
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.what:
            return self.what
        return "a non-empty string" if self.nonempty else "a string"

    def check(self, value: Any, path: str) -> None:
        ok = isinstance(value, str) and (not self.nonempty or bool(value))
        ok = ok and (self.choices is None or value in self.choices)
        ok = ok and (self.pattern is None or re.fullmatch(self.pattern, value) is not None)
        if not ok:
            raise _Invalid(path, self.describe(), value)


@dataclass(frozen=True)
class FileName(Spec):
    """A plain file name inside the manifest's folder."""

    def describe(self) -> str:
        return "a plain file name inside its folder (no '/', '\\', '..' or absolute path)"

    def check(self, value: Any, path: str) -> None:
        if not check_plain_name(value):
            raise _Invalid(path, self.describe(), value)


@dataclass(frozen=True)
class Dim(Spec):
    """A tensor dimension: a positive integer or a symbolic name (``"batch"``)."""

    def describe(self) -> str:
        return "a positive integer or a symbolic name"

    def check(self, value: Any, path: str) -> None:
        if isinstance(value, str) and value:
            return
        Int(lo=1).check(value, path)


@dataclass(frozen=True)
class Seq(Spec):
    """A JSON list of ``item`` with a length within ``[min_len, max_len]``."""

    item: Spec
    min_len: int = 0
    max_len: int | None = None
    unique: bool = False

    def describe(self) -> str:
        if self.max_len is not None and self.max_len == self.min_len:
            size = f"{self.min_len} item{'s' if self.min_len != 1 else ''}"
        elif self.min_len:
            size = f"at least {self.min_len} item{'s' if self.min_len != 1 else ''}"
        else:
            size = "items"
        return f"a list of {size}, each {self.item.describe()}" + (", all different" if self.unique else "")

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list | tuple) or len(value) < self.min_len:
            raise _Invalid(path, self.describe(), value)
        if self.max_len is not None and len(value) > self.max_len:
            raise _Invalid(path, self.describe(), value)
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]")
        if self.unique and len({repr(v) for v in value}) != len(value):
            raise _Invalid(path, self.describe(), value)


@dataclass(frozen=True)
class MapOf(Spec):
    """A JSON object whose values are each ``value`` (keys are strings, non-empty)."""

    value: Spec = field(default_factory=Anything)
    min_len: int = 0

    def describe(self) -> str:
        return "an object" + (f" with at least {self.min_len} entries" if self.min_len else "")

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, Mapping) or len(value) < self.min_len:
            raise _Invalid(path, self.describe(), value)
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise _Invalid(member_path(path, key), "a non-empty string key", key)
            self.value.check(item, member_path(path, key))


@dataclass(frozen=True)
class Obj(Spec):
    """A JSON object with ``required`` and ``optional`` fields; other fields are ignored.

    ``optional`` is a plain dict on purpose: other modules add optional fields to a shared
    schema (see the module docstring).
    """

    required: dict[str, Spec] = field(default_factory=dict)
    optional: dict[str, Spec] = field(default_factory=dict)

    def describe(self) -> str:
        need = ", ".join(self.required)
        return f"an object with {need}" if need else "an object"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise _Invalid(path, self.describe(), value)
        for name, spec in self.required.items():
            sub = f"{path}.{name}" if path else name
            if name not in value:
                raise _Invalid(sub, f"present ({spec.describe()})", _MISSING)
            spec.check(value[name], sub)
        for name, spec in self.optional.items():
            if name in value:
                spec.check(value[name], f"{path}.{name}" if path else name)


class _Missing:
    def __repr__(self) -> str:
        return "nothing (the field is missing)"


_MISSING = _Missing()


def validate(schema: Spec, data: Any, where: str, fix: str) -> None:
    """Check ``data`` against ``schema``; raise a :class:`ManifestError` naming the first bad field.

    Args:
        schema: The manifest's schema.
        data: The parsed JSON.
        where: The manifest's path, for the message.
        fix: What to do, appended to the message.
    """
    try:
        schema.check(data, "")
    except _Invalid as bad:
        raise ManifestError(
            f"{where}: field {bad.path or '(top level)'} must be {bad.expected}, found {_show(bad.value)}. {fix}"
        ) from None


def field_error(where: str, path: str, problem: str, fix: str) -> ManifestError:
    """A :class:`ManifestError` for a cross-field problem, in the same shape as :func:`validate`'s."""
    return ManifestError(f"{where}: field {path} {problem}. {fix}")


# --- shared parts of the manifests ---------------------------------------------------------

CROP = Obj(
    optional={
        "kind": Str(choices=CROP_KINDS),
        "margin": Float(lo=0.0, hi=3.0),
        "align_version": Int(
            choices=SUPPORTED_ALIGN_VERSIONS,
            what=f"a crop geometry version this facesdk makes ({list(SUPPORTED_ALIGN_VERSIONS)}; the model "
            "was made with another release: use that release, or re-train and re-export with this one)",
        ),
    }
)
"""``preprocess.crop``."""

PREPROCESS = Obj(
    required={
        "input_size": Seq(Int(lo=8, hi=8192), min_len=2, max_len=2),
        "mean": Seq(Float(), min_len=3, max_len=3),
        "std": Seq(Float(gt=0.0), min_len=3, max_len=3),
    },
    optional={
        "interpolation": Str(choices=tuple(sorted(INTERPOLATIONS))),
        "crop": CROP,
    },
)
"""A preprocessing spec (``facesdk.preprocess.Preprocess``)."""

TASK = Obj(
    required={
        "name": Str(pattern=r"[A-Za-z0-9_]+", what="a task name (letters, digits, '_')"),
        "labels": Seq(Str(), min_len=2, unique=True),
    },
)
"""One task (``facesdk.tasks.TaskSpec``); optional per-task fields go into ``TASK.optional``."""

FILE_ENTRY = Obj(
    required={
        "path": FileName(),
        "sha256": Str(pattern=r"[0-9a-f]{64}", what="64 lowercase hex digits"),
        "size": Int(lo=0),
    }
)
"""A file entry with its hash (``facesdk.contract.manifest_io.FileEntry``)."""

TASKS = Seq(TASK, min_len=1)


def check_task_names(tasks: Sequence[Mapping[str, Any]], where: str, fix: str) -> None:
    """Task names must differ."""
    names = [t["name"] for t in tasks]
    if len(set(names)) != len(names):
        raise field_error(where, "tasks", f"names tasks twice: {names}", fix)
