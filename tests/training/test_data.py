"""Manifest reader, dataset and synthetic set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesdk.errors import ConfigError
from facesdk.preprocess import CropPolicy, Preprocess, to_input_tensor
from facesdk.tasks import DEFAULT_TASKS
from facesdk.training.data import FaceDataset, read_manifest
from facesdk.training.synthetic import SynthOptions, generate_synthetic


def _csv(tmp_path: Path, body: str, header: str = "path,age_group,gender,emotion") -> Path:
    path = tmp_path / "m.csv"
    path.write_text(f"{header}\n{body}")
    return path


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("a.png,1,0,3\nb.png,9,0,1\n", ":3: bad age_group '9'"),
        ("a.png,x,0,3\n", ":2: bad age_group 'x'"),
        ("a.png,1,2,3\n", ":2: bad gender '2'"),
        ("a.png,1,0,-3\n", ":2: bad emotion '-3'"),
    ],
)
def test_reader_names_file_and_line(tmp_path: Path, body: str, needle: str) -> None:
    path = _csv(tmp_path, body)
    with pytest.raises(ConfigError, match=needle) as info:
        read_manifest(path)
    assert str(path) in str(info.value)


def test_reader_rejects_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected columns"):
        read_manifest(_csv(tmp_path, "a.png,1,0\n", header="path,age_group,gender"))


def test_reader_reads_missing_as_minus_one(tmp_path: Path) -> None:
    rows = read_manifest(_csv(tmp_path, "a.png,,1,\n"))
    assert (rows[0].age_group, rows[0].gender, rows[0].emotion) == (-1, 1, -1)
    assert rows[0].path == tmp_path / "a.png"


def test_synthetic_labels_and_missing(tmp_path: Path) -> None:
    opts = SynthOptions(count=400, missing=0.3, seed=3, size=24)
    res = generate_synthetic(tmp_path / "s", opts)
    rows = read_manifest(res.train) + read_manifest(res.val)
    assert len(rows) == 400 and 0.1 < len(read_manifest(res.val)) / 400 < 0.3
    labels = np.array([[r.age_group, r.gender, r.emotion] for r in rows])
    for j, task in enumerate(DEFAULT_TASKS):
        share = (labels[:, j] == -1).mean()
        assert 0.22 < share < 0.38, (task.name, share)
        present = labels[labels[:, j] >= 0, j]
        assert set(present.tolist()) == set(range(task.num_classes))
    again = generate_synthetic(tmp_path / "t", opts)
    assert (again.root / "images/000007.png").read_bytes() == (res.root / "images/000007.png").read_bytes()
    assert again.train.read_text() == res.train.read_text()
    with pytest.raises(ConfigError, match="synthetic set made with"):
        generate_synthetic(tmp_path / "s", SynthOptions(count=50, seed=3, size=24))


def test_dataset_uses_sdk_preprocessing(tiny_synth) -> None:  # noqa: ANN001
    spec = Preprocess(input_size=(32, 32), crop=CropPolicy(kind="full"))
    rows = read_manifest(tiny_synth.train)
    ds = FaceDataset(rows, DEFAULT_TASKS, spec)
    x, y = ds[0]
    assert tuple(x.shape) == (3, 32, 32) and y.shape == (3,)
    np.testing.assert_array_equal(x.numpy(), to_input_tensor([ds.read_image(0)], spec)[0])
    flipped = FaceDataset(rows, DEFAULT_TASKS, spec, hflip=True, seed=0)
    flips = [flipped._flip(i) for i in range(len(rows))]
    assert any(flips) and not all(flips)
    assert flips == [flipped._flip(i) for i in range(len(rows))]


def test_data_synth_cli(tmp_path: Path) -> None:
    from facesdk.cli import main

    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--count", "20", "--size", "24", "--seed", "2"]) == 0
    assert len(read_manifest(out / "train.csv")) + len(read_manifest(out / "val.csv")) == 20
    assert main(["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
