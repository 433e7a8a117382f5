"""Readers for the published layouts of FairFace, UTKFace, Lagenda, RAF-DB, CelebA-HQ and VggFace2.

Every reader takes the dataset's root folder and a :class:`ReadReport`, and returns
:class:`FaceRecord` objects with labels in our class order. A malformed row is added to the
report with its file and line and skipped; a label that cannot be mapped (RAF-DB "unsure"
gender, a negative Lagenda age) becomes ``MISSING``. See ``docs/datasets.md``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from facesdk.errors import ConfigError, MissingFileError
from facesdk.tasks import AGE, GENDER, MISSING, age_to_group

from .records import (
    RAFDB_EMOTION_TO_OURS,
    FaceRecord,
    ReadReport,
    age_label_to_group,
    age_to_group_or_missing,
    gender_index,
    parse_age,
)

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "dataset_title",
    "get_dataset",
    "read_celeba_hq",
    "read_fairface",
    "read_lagenda",
    "read_rafdb",
    "read_utkface",
    "read_vggface2",
]

Reader = Callable[..., list[FaceRecord]]


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise MissingFileError(f"{path} does not exist: expected {what} (see docs/datasets.md)")
    return path


def _csv_rows(
    path: Path, report: ReadReport, required: tuple[str, ...], nonempty: tuple[str, ...] | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row)`` of a headed CSV with the ``required`` columns.

    Rows where a ``nonempty`` column (default: all required) is empty go to the report.
    """
    nonempty = required if nonempty is None else nonempty
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        header = [h.strip() for h in reader.fieldnames or []]
        absent = [c for c in required if c not in header]
        if absent:
            raise ConfigError(f"{path} lacks column(s) {absent}; found {header}")
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num
            if any(row.get(c) in (None, "") for c in nonempty):
                report.add(path, line, f"missing field(s) {[c for c in nonempty if not row.get(c)]}")
                continue
            yield line, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _key(rel: str) -> str:
    """A crop name from an image path relative to the dataset root: no extension, '/' kept."""
    return str(Path(rel).with_suffix("")).replace("\\", "/")


# --------------------------------------------------------------------------------------- FairFace
def read_fairface(root: Path, report: ReadReport) -> list[FaceRecord]:
    """``fairface_label_train.csv`` / ``fairface_label_val.csv`` (``file,age,gender,race,service_test``).

    The official validation set becomes our ``test`` split.
    """
    records = []
    for name, split in (("fairface_label_train.csv", "train"), ("fairface_label_val.csv", "test")):
        path = _need(root / name, "the FairFace label CSV")
        for line, row in _csv_rows(path, report, ("file", "age", "gender")):
            try:
                age, gender = age_label_to_group(row["age"]), gender_index(row["gender"])
            except ValueError as exc:
                report.add(path, line, str(exc))
                continue
            records.append(
                FaceRecord(
                    root / row["file"], _key(row["file"]), age, gender, split=split, source=f"{path}:{line}"
                )
            )
    return records


# --------------------------------------------------------------------------------------- UTKFace
_UTK_NAME = re.compile(r"^(?P<age>\d+)_(?P<gender>\d+)_(?:(?P<race>\d+)_)?(?P<date>\d+)")
_IMAGE_EXT = (".jpg", ".jpeg", ".png")


def read_utkface(root: Path, report: ReadReport) -> list[FaceRecord]:
    """``[age]_[gender]_[race]_[date&time].jpg`` anywhere under ``root`` (gender 0 male, 1 female).

    Names that lack the race field (three UTKFace files do) still give age and gender.
    """
    _need(root, "the UTKFace image folder")
    records = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_EXT):
        rel = path.relative_to(root).as_posix()
        match = _UTK_NAME.match(path.name)
        if match is None:
            report.add(rel, 0, "file name is not [age]_[gender]_[race]_[date&time].jpg")
            continue
        try:
            age = age_to_group(parse_age(match["age"]))
        except ValueError as exc:
            report.add(rel, 0, str(exc))
            continue
        gender = {"0": GENDER.index("male"), "1": GENDER.index("female")}.get(match["gender"])
        if gender is None:
            report.add(
                rel, 0, f"gender {match['gender']!r} is neither 0 (male) nor 1 (female); label dropped"
            )
            gender = MISSING
        records.append(FaceRecord(path, _key(rel), age, gender, source=rel))
    return records


# --------------------------------------------------------------------------------------- Lagenda
def _box_xyxy(row: dict[str, str], prefix: str) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(row[f"{prefix}_{c}"]) for c in ("x0", "y0", "x1", "y1"))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"{prefix} box ({x0}, {y0}, {x1}, {y1}) has no area")
    return (x0, y0, x1 - x0, y1 - y0)


def _absent(values: list[str]) -> bool:
    return all(v in ("", "-1", "-1.0") for v in values)


def read_lagenda(root: Path, report: ReadReport, images: str | None = None) -> list[FaceRecord]:
    """``lagenda_annotation.csv``: ``img_name, age, gender, face_x0..face_y1[, person_x0..]``.

    Gender ``M``/``F``, age in years; ``-1`` marks an unknown value. Rows without a face box
    (person-only rows) and faces with neither age nor gender are skipped and counted. Images
    are looked up in ``images`` when given, else relative to ``root``, then ``root/images``;
    several faces of one image get keys ``<image>_f<i>``.
    """
    path = _need(root / "lagenda_annotation.csv", "the Lagenda annotation CSV")
    face = ("face_x0", "face_y0", "face_x1", "face_y1")
    folders = [Path(images)] if images else [root, root / "images"]
    records, seen = [], {}
    for line, row in _csv_rows(path, report, ("img_name", *face, "age", "gender"), nonempty=("img_name",)):
        if _absent([row[c] for c in face]):
            report.skip("no face box")
            continue
        try:
            box = _box_xyxy(row, "face")
            age = MISSING if _absent([row["age"]]) else age_to_group_or_missing(row["age"])
        except ValueError as exc:
            report.add(path, line, str(exc))
            continue
        gender = MISSING
        if not _absent([row["gender"]]):
            try:
                gender = gender_index(row["gender"])
            except ValueError as exc:
                report.add(path, line, f"{exc}; label dropped")
        if age == MISSING and gender == MISSING:
            report.skip("face without age or gender")
            continue
        image = next(
            (f / row["img_name"] for f in folders if (f / row["img_name"]).exists()),
            folders[0] / row["img_name"],
        )
        index = seen[row["img_name"]] = seen.get(row["img_name"], -1) + 1
        key = f"{_key(row['img_name'])}_f{index}"
        records.append(FaceRecord(image, key, age, gender, box=box, source=f"{path}:{line}"))
    return records


# --------------------------------------------------------------------------------------- RAF-DB
def _rafdb_gender(path: Path) -> int:
    """Gender from ``Annotation/manual/<name>_manu_attri.txt``: 5 landmark lines, gender, race, age.

    Gender 0 male, 1 female, 2 unsure (-> ``MISSING``).
    """
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 6:
        raise ValueError(f"{path.name} has {len(lines)} lines; expected 5 landmarks then gender, race, age")
    return {"0": GENDER.index("male"), "1": GENDER.index("female")}.get(lines[5], MISSING)


def read_rafdb(root: Path, report: ReadReport, images: str = "auto") -> list[FaceRecord]:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` lines ``train_00001.jpg 5``.

    Args:
        images: ``"original"`` (``Image/original/train_00001.jpg``), ``"aligned"``
            (``Image/aligned/train_00001_aligned.jpg``) or ``"auto"`` (original when present).
    """
    path = _need(root / "EmoLabel" / "list_patition_label.txt", "the RAF-DB basic label list")
    if images == "auto":
        images = "original" if (root / "Image" / "original").is_dir() else "aligned"
    if images not in ("original", "aligned"):
        raise ConfigError(f"RAF-DB images must be 'original', 'aligned' or 'auto', got {images!r}")
    manual = root / "Annotation" / "manual"
    records = []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        parts = text.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAFDB_EMOTION_TO_OURS:
            report.add(path, line, f"expected '<name>.jpg <label 1..7>', got {text.strip()!r}")
            continue
        name = parts[0]
        split = name.split("_", 1)[0]
        if split not in ("train", "test"):
            report.add(path, line, f"name {name!r} starts with neither train_ nor test_")
            continue
        stem = Path(name).stem
        image = root / "Image" / images / (name if images == "original" else f"{stem}_aligned.jpg")
        gender = MISSING
        attri = manual / f"{stem}_manu_attri.txt"
        if attri.is_file():
            try:
                gender = _rafdb_gender(attri)
            except (ValueError, OSError) as exc:
                report.add(attri, 6, f"{exc}; gender dropped")
        emotion = RAFDB_EMOTION_TO_OURS[int(parts[1])]
        records.append(
            FaceRecord(image, stem, MISSING, gender, emotion, split=split, source=f"{path}:{line}")
        )
    return records


# --------------------------------------------------------------------------------------- CelebA-HQ
def read_celeba_hq(root: Path, report: ReadReport) -> list[FaceRecord]:
    """``CelebAMask-HQ-attribute-anno.txt``: a count line, 40 attribute names, ``0.jpg  1 -1 ...``.

    Only gender is used (``Male`` 1 -> male, -1 -> female); images in ``CelebA-HQ-img/``.
    """
    path = _need(root / "CelebAMask-HQ-attribute-anno.txt", "the CelebAMask-HQ attribute file")
    lines = path.read_text().splitlines()
    if len(lines) < 2 or "Male" not in lines[1].split():
        raise ConfigError(f"{path}: line 2 must list the 40 attribute names including 'Male'")
    names = lines[1].split()
    male = names.index("Male")
    images = root / "CelebA-HQ-img"
    records = []
    for line, text in enumerate(lines[2:], start=3):
        parts = text.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or parts[male + 1] not in ("1", "-1"):
            report.add(path, line, f"expected an image name and {len(names)} values of 1/-1")
            continue
        gender = GENDER.index("male") if parts[male + 1] == "1" else GENDER.index("female")
        records.append(
            FaceRecord(images / parts[0], _key(parts[0]), MISSING, gender, source=f"{path}:{line}")
        )
    return records


# --------------------------------------------------------------------------------------- VggFace2
def _vgg_boxes(root: Path) -> dict[str, tuple[float, float, float, float]]:
    boxes = {}
    for name in ("loose_bb_train.csv", "loose_bb_test.csv"):
        path = root / "bb_landmark" / name
        if path.is_file():
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    try:
                        boxes[row["NAME_ID"]] = tuple(float(row[c]) for c in ("X", "Y", "W", "H"))  # type: ignore[assignment]
                    except (KeyError, ValueError):
                        continue
    return boxes


def _vgg_genders(root: Path) -> dict[str, int]:
    path = root / "identity_meta.csv"
    if not path.is_file():
        return {}
    out = {}
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        for row in csv.DictReader(fh, skipinitialspace=True):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            try:
                out[row["Class_ID"]] = gender_index(row["Gender"])
            except (KeyError, ValueError):
                continue
    return out


def read_vggface2(root: Path, report: ReadReport, annotations: str | None = None) -> list[FaceRecord]:
    """VggFace2 images (``train/`` or ``test/``) listed in an age-annotation CSV.

    The CSV (default ``root/age_annotations.csv``) has a ``path`` column (``n000002/0001_01.jpg``
    under ``train/`` or ``test/``, or with that folder in front) and ``age`` (years) or
    ``age_group`` (a FairFace bin label); an optional ``gender`` column overrides the
    identity's gender from ``identity_meta.csv``. Boxes come from ``bb_landmark/loose_bb_*.csv``.
    """
    path = _need(Path(annotations) if annotations else root / "age_annotations.csv", "a VggFace2 age CSV")
    boxes, genders = _vgg_boxes(root), _vgg_genders(root)
    records = []
    for line, row in _csv_rows(path, report, ("path",)):
        rel = row["path"].lstrip("/")
        parts = Path(rel).parts
        if parts[0] in ("train", "test"):
            image, name_id, split = root / rel, _key(Path(*parts[1:]).as_posix()), parts[0]
        else:
            split = "test" if (root / "test" / rel).exists() else "train"
            image, name_id = root / split / rel, _key(rel)
        try:
            if row.get("age"):
                age = age_to_group_or_missing(row["age"])
            elif row.get("age_group"):
                value = row["age_group"]
                age = (
                    int(value)
                    if value.isdigit() and int(value) < AGE.num_classes
                    else age_label_to_group(value)
                )
            else:
                raise ValueError("neither 'age' nor 'age_group' is given")
            gender = (
                gender_index(row["gender"])
                if row.get("gender")
                else genders.get(name_id.split("/")[0], MISSING)
            )
        except ValueError as exc:
            report.add(path, line, str(exc))
            continue
        records.append(
            FaceRecord(
                image, f"{split}/{name_id}", age, gender, box=boxes.get(name_id), source=f"{path}:{line}"
            )
        )
    return records


# --------------------------------------------------------------------------------------- registry
@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A dataset: its reader and what it provides.

    Attributes:
        name: Registry name (``facesdk data prepare NAME``).
        title: Name used in reports and the results table.
        reader: ``reader(root, report, **options) -> list[FaceRecord]``.
        tasks: Tasks it labels.
        official_test: Whether it ships a test split (kept as ``test.csv``).
        boxes: Whether it gives face boxes (crop policy ``box`` works without detection).
    """

    name: str
    title: str
    reader: Reader
    tasks: tuple[str, ...]
    official_test: bool = False
    boxes: bool = False


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("fairface", "FairFace", read_fairface, ("age", "gender"), official_test=True),
        DatasetInfo("utkface", "UTKFace", read_utkface, ("age", "gender")),
        DatasetInfo("lagenda", "Lagenda", read_lagenda, ("age", "gender"), boxes=True),
        DatasetInfo("rafdb", "RAF-DB", read_rafdb, ("emotion", "gender"), official_test=True),
        DatasetInfo("celeba_hq", "CelebA-HQ", read_celeba_hq, ("gender",)),
        DatasetInfo("vggface2", "VggFace2", read_vggface2, ("age", "gender"), boxes=True),
    )
}


def get_dataset(name: str) -> DatasetInfo:
    """Look a dataset up by name (case-insensitive; ``raf-db``, ``celeba-hq`` accepted)."""
    key = name.strip().lower().replace("-", "_")
    key = {"raf_db": "rafdb", "celebahq": "celeba_hq", "vggface": "vggface2"}.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[key]


def dataset_title(dataset: str) -> str:
    """A dataset's display name (``FairFace``), or its key when it is not a known dataset."""
    return DATASETS[dataset].title if dataset in DATASETS else dataset
