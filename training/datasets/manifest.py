"""Our manifest CSV (``path,age_group,gender,emotion``), ``prepare.json`` and seeded stratified splits.

Paths are relative to the CSV's folder; labels are class indices in our order, empty when
missing. ``prepare.json`` beside the CSVs records the dataset and the crop spec.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesdk.contract.manifest_io import atomic_write_bytes
from facesdk.errors import ConfigError, MissingFileError
from facesdk.preprocess import CropPolicy
from facesdk.tasks import AGE, EMOTION, GENDER, MISSING

__all__ = [
    "COLUMNS",
    "PREPARE_FILE",
    "ManifestRow",
    "read_manifest",
    "read_prepare_info",
    "prepared_crop_policy",
    "stratified_split",
    "write_manifest",
]

COLUMNS = ("path", "age_group", "gender", "emotion")
PREPARE_FILE = "prepare.json"
_TASKS = {"age_group": AGE, "gender": GENDER, "emotion": EMOTION}


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """One manifest row; ``path`` is absolute once read."""

    path: Path
    age_group: int = MISSING
    gender: int = MISSING
    emotion: int = MISSING

    def label(self, task: str) -> int:
        """The label of task ``age``/``age_group``, ``gender`` or ``emotion``."""
        return getattr(self, "age_group" if task == "age" else task)


def write_manifest(path: str | os.PathLike[str], rows: Iterable[tuple[str, int, int, int]]) -> int:
    """Write ``(relative path, age_group, gender, emotion)`` rows atomically; return the row count."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for rel, *labels in rows:
        writer.writerow([rel, *("" if v == MISSING else int(v) for v in labels)])
        count += 1
    atomic_write_bytes(path, buf.getvalue().encode())
    return count


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestRow]:
    """Read a manifest CSV, checking columns and label ranges (errors name the line)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"manifest {path} does not exist")
    rows = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if list(reader.fieldnames or [])[:4] != list(COLUMNS):
            raise ConfigError(f"{path}: expected columns {list(COLUMNS)}, found {reader.fieldnames}")
        for row in reader:
            labels = {}
            for col, task in _TASKS.items():
                text = (row.get(col) or "").strip()
                try:
                    labels[col] = task.check_index(int(text)) if text else MISSING
                except (ValueError, ConfigError) as exc:
                    raise ConfigError(f"{path}:{reader.line_num}: bad {col} {text!r} ({exc})") from None
            rows.append(ManifestRow(path.parent / row["path"], **labels))
    return rows


def read_prepare_info(manifest: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``prepare.json`` beside a manifest, or ``None`` when there is none."""
    info = Path(manifest).parent / PREPARE_FILE
    return json.loads(info.read_text()) if info.is_file() else None


def prepared_crop_policy(manifests: Iterable[str | os.PathLike[str]]) -> CropPolicy | None:
    """The crop policy that made the crops of ``manifests`` (from their ``prepare.json``).

    Training should record it in the checkpoint so that the Analyzer crops faces the same
    way. Returns ``None`` when no manifest has a ``prepare.json``.

    Raises:
        ConfigError: The manifests were prepared with different policies or margins.
    """
    found: dict[str, str] = {}
    for manifest in manifests:
        info = read_prepare_info(manifest)
        if info is not None and "preprocess" in info:
            crop = CropPolicy.from_json(info["preprocess"].get("crop", {}))
            found[json.dumps(crop.to_json(), sort_keys=True)] = str(manifest)
    if len(found) > 1:
        detail = "; ".join(f"{m}: {c}" for c, m in found.items())
        raise ConfigError(
            f"manifests were prepared with different crop policies ({detail}); prepare them alike"
        )
    return CropPolicy.from_json(json.loads(next(iter(found)))) if found else None


def stratified_split(
    keys: Sequence[Any], fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Split indices into (train, validation), stratified by ``keys`` (e.g. label tuples).

    Validation gets ``round(len(keys) * fraction)`` indices. Each stratum gives
    ``floor(n * fraction)`` of them, and the strata with the largest remainders one more
    (ties broken by the seed), so rare label combinations reach validation too. Members
    are drawn with ``random.Random(seed)``: the result depends only on ``keys`` and ``seed``.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    strata: dict[Any, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        strata[key].append(i)
    rng = random.Random(seed)
    order = sorted(strata, key=repr)
    quota = {key: len(strata[key]) * fraction for key in order}
    take = {key: math.floor(quota[key]) for key in order}
    spare = round(len(keys) * fraction) - sum(take.values())
    ties = {key: rng.random() for key in order}
    for key in sorted(order, key=lambda k: (take[k] - quota[k], ties[k]))[:spare]:
        take[key] += 1
    train, val = [], []
    for key in order:
        members = strata[key]
        rng.shuffle(members)
        val.extend(members[: take[key]])
        train.extend(members[take[key] :])
    return sorted(train), sorted(val)
