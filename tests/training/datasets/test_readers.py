"""Each reader on a tiny fixture in its dataset's published layout, malformed rows included."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesdk.errors import ConfigError, MissingFileError
from facesdk.tasks import AGE, EMOTION, GENDER, MISSING
from facesdk.training.datasets import ReadReport, get_dataset
from facesdk.training.datasets.records import (
    age_label_to_group,
    age_to_group_or_missing,
    gender_index,
    label_counts,
)

M, F = GENDER.index("male"), GENDER.index("female")


def _read(name: str, root: Path, **options: str) -> tuple[dict, ReadReport]:
    report = ReadReport(name)
    records = get_dataset(name).reader(root, report, **options)
    return {r.key: r for r in records}, report


def _lines(report: ReadReport) -> list[tuple[str, int]]:
    return [(Path(i.file).name, i.line) for i in report.issues]


@pytest.mark.parametrize(
    ("text", "group"),
    [
        ("0", 0),
        ("2.9", 0),
        ("3", 1),
        ("9", 1),
        ("10", 2),
        ("19.99", 2),
        ("20", 3),
        ("69", 7),
        ("70", 8),
        ("110", 8),
    ],
)
def test_numeric_ages_map_to_fairface_bins(text: str, group: int) -> None:
    assert age_to_group_or_missing(text) == group


def test_age_and_gender_edge_cases() -> None:
    assert age_to_group_or_missing("-1") == MISSING
    with pytest.raises(ValueError):
        age_to_group_or_missing("130")
    assert age_label_to_group("more than 70") == AGE.index("70+")
    assert age_label_to_group(" 0-2 ") == 0
    with pytest.raises(ValueError):
        age_label_to_group("70-79")
    assert [gender_index(g) for g in ("Male", "M", "f", "FEMALE")] == [M, M, F, F]
    with pytest.raises(ValueError):
        gender_index("other")


def test_fairface(fairface_root: Path) -> None:
    records, report = _read("fairface", fairface_root)
    assert sorted(records) == ["train/1", "train/2", "train/3", "train/7", "val/1", "val/2"]
    assert records["train/1"].labels() == (AGE.index("50-59"), M, MISSING)
    assert records["train/2"].age_group == AGE.index("70+")
    assert records["val/2"].age_group == AGE.index("70+")
    assert records["val/1"].split == "test" and records["train/3"].split == "train"
    assert records["train/1"].image == fairface_root / "train" / "1.jpg"
    assert _lines(report) == [
        ("fairface_label_train.csv", 5),
        ("fairface_label_train.csv", 6),
        ("fairface_label_train.csv", 7),
    ]


def test_fairface_csv_with_byte_order_mark(fairface_root: Path) -> None:
    path = fairface_root / "fairface_label_val.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    records, report = _read("fairface", fairface_root)
    assert "val/1" in records and len(report) == 3


def test_utkface(utkface_root: Path) -> None:
    records, report = _read("utkface", utkface_root.parent)
    assert records["UTKFace/25_0_0_20170116174525125.jpg.chip"].labels() == (AGE.index("20-29"), M, MISSING)
    assert records["UTKFace/39_1_20170116174525125.jpg.chip"].labels() == (AGE.index("30-39"), F, MISSING)
    assert records["UTKFace/70_1_3_20170109150557335.jpg.chip"].age_group == AGE.index("70+")
    assert records["UTKFace/2_3_1_20170109150557335.jpg.chip"].labels() == (0, MISSING, MISSING)
    assert len(records) == 4
    messages = {Path(i.file).name: i.message for i in report.issues}
    assert set(messages) == {
        "2_3_1_20170109150557335.jpg.chip.jpg",
        "130_0_0_20170109150557335.jpg.chip.jpg",
        "notes.jpg",
    }


def test_lagenda(lagenda_root: Path) -> None:
    records, report = _read("lagenda", lagenda_root)
    assert sorted(records) == ["a_f0", "a_f1", "b_f0", "c_f0"]
    assert records["a_f0"].box == (10.0, 10.0, 30.0, 30.0)
    assert records["a_f0"].labels() == (AGE.index("30-39"), M, MISSING)
    assert records["a_f1"].labels() == (MISSING, F, MISSING)
    assert records["b_f0"].labels() == (AGE.index("3-9"), F, MISSING)
    assert records["c_f0"].labels() == (0, MISSING, MISSING)
    assert records["a_f0"].image == lagenda_root / "images" / "a.jpg"
    assert _lines(report) == [("lagenda_annotation.csv", 7), ("lagenda_annotation.csv", 8)]
    assert report.skipped == {"no face box": 1, "face without age or gender": 1}
    elsewhere, _ = _read("lagenda", lagenda_root, images=str(lagenda_root / "images"))
    assert elsewhere["b_f0"].image == lagenda_root / "images" / "b.jpg"


def test_rafdb(rafdb_root: Path) -> None:
    records, report = _read("rafdb", rafdb_root)
    assert sorted(records) == ["test_0001", "test_0002", "train_00001", "train_00002"]
    assert records["train_00001"].labels() == (MISSING, F, EMOTION.index("sad"))
    assert records["train_00002"].labels() == (MISSING, M, EMOTION.index("surprise"))
    assert records["test_0001"].labels() == (MISSING, MISSING, EMOTION.index("neutral"))  # gender 2: unsure
    assert records["test_0002"].emotion == EMOTION.index("happy")
    assert records["test_0001"].split == "test"
    assert records["train_00001"].image == rafdb_root / "Image" / "aligned" / "train_00001_aligned.jpg"
    assert _lines(report) == [("list_patition_label.txt", 3)]
    original, _ = _read("rafdb", rafdb_root, images="original")
    assert original["train_00001"].image == rafdb_root / "Image" / "original" / "train_00001.jpg"


def test_rafdb_label_order_matches_ours() -> None:
    raf = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
    ours = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
    from facesdk.training.datasets.records import RAFDB_EMOTION_TO_OURS

    assert [EMOTION.labels[RAFDB_EMOTION_TO_OURS[i + 1]] for i in range(7)] == ours
    assert len(raf) == EMOTION.num_classes


def test_celeba_hq(celeba_root: Path) -> None:
    records, report = _read("celeba_hq", celeba_root)
    assert {k: r.gender for k, r in records.items()} == {"0": M, "1": F}
    assert records["0"].image == celeba_root / "CelebA-HQ-img" / "0.jpg"
    assert _lines(report) == [("CelebAMask-HQ-attribute-anno.txt", 5)]


def test_vggface2(vggface2_root: Path) -> None:
    records, report = _read("vggface2", vggface2_root)
    assert sorted(records) == ["train/n000002/0001_01", "train/n000003/0002_01"]
    first = records["train/n000002/0001_01"]
    assert first.labels() == (AGE.index("40-49"), M, MISSING)
    assert first.box == (4.0, 5.0, 30.0, 32.0)
    assert records["train/n000003/0002_01"].labels() == (AGE.index("10-19"), F, MISSING)
    assert _lines(report) == [("age_annotations.csv", 4)]


def test_missing_layout_and_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="fairface_label_train.csv"):
        _read("fairface", tmp_path)
    with pytest.raises(ConfigError, match="unknown dataset"):
        get_dataset("imagenet")
    assert get_dataset("RAF-DB").name == "rafdb" and get_dataset("celeba-hq").name == "celeba_hq"


def test_label_counts(fairface_root: Path) -> None:
    records, _ = _read("fairface", fairface_root)
    counts = label_counts(list(records.values()))
    assert counts["emotion"] == {"missing": 6}
    assert counts["gender"] == {"male": 3, "female": 3}


def test_report_keeps_every_issue_but_logs_the_first(caplog: pytest.LogCaptureFixture) -> None:
    report = ReadReport("x", max_logged=3)
    with caplog.at_level("WARNING"):
        for line in range(1, 11):
            report.add("f.csv", line, "bad")
    assert len(report) == 10 and report.to_json()["issues"][-1] == {
        "file": "f.csv",
        "line": 10,
        "message": "bad",
    }
    assert len(caplog.records) == 4 and "report.json" in caplog.records[-1].getMessage()
