"""Face records read from a dataset, the report of rows that could not be read, label mapping."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facesdk.tasks import AGE, EMOTION, GENDER, MISSING, age_to_group

__all__ = [
    "FaceRecord",
    "Issue",
    "ReadReport",
    "parse_age",
    "age_label_to_group",
    "age_to_group_or_missing",
    "label_counts",
    "gender_index",
    "RAFDB_EMOTION_TO_OURS",
]

log = logging.getLogger(__name__)

MAX_AGE = 120.0
"""Ages above this are treated as malformed."""

# RAF-DB basic labels 1..7 are Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral:
# the same order as ours, shifted by one.
RAFDB_EMOTION_TO_OURS: dict[int, int] = {
    1: EMOTION.index("surprise"),
    2: EMOTION.index("fear"),
    3: EMOTION.index("disgust"),
    4: EMOTION.index("happy"),
    5: EMOTION.index("sad"),
    6: EMOTION.index("angry"),
    7: EMOTION.index("neutral"),
}

_AGE_ALIASES = {"more than 70": "70+", "70-": "70+", "70 and above": "70+", "70+": "70+"}
_GENDERS = {
    "male": "male",
    "m": "male",
    "man": "male",
    "female": "female",
    "f": "female",
    "woman": "female",
}


@dataclass(frozen=True, slots=True)
class FaceRecord:
    """One face of a dataset, labels in our class order (``MISSING`` where unknown).

    Attributes:
        image: Absolute path of the source image.
        key: Unique name of the face within the dataset (becomes the crop's file name).
        box: Face box ``(x, y, w, h)`` in image pixels when the dataset gives one.
        split: Official split (``"train"`` or ``"test"``); ``None`` when the dataset has none.
        source: ``file:line`` the record came from, for messages.
    """

    image: Path
    key: str
    age_group: int = MISSING
    gender: int = MISSING
    emotion: int = MISSING
    box: tuple[float, float, float, float] | None = None
    split: str | None = None
    source: str = ""

    def labels(self) -> tuple[int, int, int]:
        return (self.age_group, self.gender, self.emotion)


@dataclass(frozen=True, slots=True)
class Issue:
    """A row or file that could not be read as the dataset's format says."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ReadReport:
    """What a reader could not use: malformed rows (with file and line) and rows skipped by design.

    The first :attr:`max_logged` issues are logged as warnings; all are kept for ``report.json``.
    """

    dataset: str
    issues: list[Issue] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    max_logged: int = 20

    def add(self, file: str | os.PathLike[str], line: int, message: str) -> None:
        """Record a malformed row or file."""
        issue = Issue(str(file), int(line), message)
        self.issues.append(issue)
        if len(self.issues) <= self.max_logged:
            log.warning("%s: %s", self.dataset, issue)
        elif len(self.issues) == self.max_logged + 1:
            log.warning("%s: more malformed rows; all are listed in report.json", self.dataset)

    def skip(self, reason: str) -> None:
        """Count a well-formed row that gives no training face (e.g. a person box without a face)."""
        self.skipped[reason] += 1

    def __len__(self) -> int:
        return len(self.issues)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "count": len(self.issues),
            "skipped": dict(self.skipped),
            "issues": [{"file": i.file, "line": i.line, "message": i.message} for i in self.issues],
        }


def parse_age(text: str) -> float:
    """Parse a numeric age in years; raise ``ValueError`` for anything else or out of range."""
    age = float(text)
    if not 0.0 <= age <= MAX_AGE:
        raise ValueError(f"age {text!r} is outside 0..{MAX_AGE:g}")
    return age


def age_to_group_or_missing(text: str) -> int:
    """Numeric age -> FairFace bin; negative ages (a common 'unknown' marker) -> ``MISSING``."""
    age = float(text)
    if age < 0:
        return MISSING
    return age_to_group(parse_age(text))


def age_label_to_group(text: str) -> int:
    """A FairFace age label ("20-29", "more than 70", "70+") -> bin index; ``ValueError`` otherwise."""
    label = text.strip().lower()
    label = _AGE_ALIASES.get(label, label)
    if label not in AGE.labels:
        raise ValueError(f"unknown age group {text!r}; expected one of {list(AGE.labels)} or 'more than 70'")
    return AGE.labels.index(label)


def gender_index(text: str) -> int:
    """ "Male"/"M"/"female"/"F" (any case) -> our gender index; ``ValueError`` otherwise."""
    name = _GENDERS.get(text.strip().lower())
    if name is None:
        raise ValueError(f"unknown gender {text!r}; expected male/female or M/F")
    return GENDER.index(name)


def label_counts(records: list[FaceRecord]) -> dict[str, dict[str, int]]:
    """Per task, how many records carry each label (for reports)."""
    out: dict[str, dict[str, int]] = {}
    for task, pos in ((AGE, 0), (GENDER, 1), (EMOTION, 2)):
        counts = Counter(r.labels()[pos] for r in records)
        out[task.name] = {
            ("missing" if k == MISSING else task.labels[k]): v for k, v in sorted(counts.items())
        }
    return out
