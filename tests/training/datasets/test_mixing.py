"""Mixing prepared manifests with per-dataset weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facesdk.errors import ConfigError
from facesdk.preprocess import CropPolicy
from facesdk.training.datasets import (
    MixSource,
    build_sampling_plan,
    prepared_crop_policy,
    read_manifest,
    sources_from_config,
    write_manifest,
)
from facesdk.training.datasets.cli import main as data_main


def _manifest(folder: Path, n: int, dataset: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "prepare.json").write_text(json.dumps({"dataset": dataset}))
    write_manifest(folder / "train.csv", [(f"crops/{i}.jpg", i % 9, i % 2, -1) for i in range(n)])
    return folder / "train.csv"


def test_weights_give_each_dataset_its_share(tmp_path: Path) -> None:
    big, small = _manifest(tmp_path / "ff", 30, "fairface"), _manifest(tmp_path / "raf", 5, "rafdb")
    plan = build_sampling_plan([MixSource(big, 1.0), MixSource(small, 3.0)])
    assert len(plan) == 35
    assert plan.weights.sum() == pytest.approx(1.0)
    assert plan.weights[plan.source == 0].sum() == pytest.approx(0.25)
    assert plan.weights[plan.source == 1].sum() == pytest.approx(0.75)
    assert np.allclose(plan.weights[:30], 0.25 / 30) and np.allclose(plan.weights[30:], 0.75 / 5)
    assert [s["name"] for s in plan.summary] == ["fairface", "rafdb"]
    assert plan.rows[0].path == tmp_path / "ff" / "crops" / "0.jpg"
    torch = pytest.importorskip("torch")
    drawn = list(plan.sampler(num_samples=400, generator=torch.Generator().manual_seed(0)))
    share = np.mean([plan.source[i] == 1 for i in drawn])
    assert 0.65 < share < 0.85


def test_config_forms_and_errors(tmp_path: Path) -> None:
    path = _manifest(tmp_path / "ff", 3, "fairface")
    sources = sources_from_config([str(path), {"manifest": str(path), "weight": 0.5, "name": "again"}])
    assert [(s.weight, s.name) for s in sources] == [(1.0, None), (0.5, "again")]
    assert sources_from_config(str(path))[0].manifest == path
    with pytest.raises(ConfigError, match="unknown key"):
        sources_from_config([{"manifest": str(path), "wieght": 2}])
    with pytest.raises(ConfigError, match="> 0"):
        MixSource(path, 0.0)
    empty = tmp_path / "empty.csv"
    write_manifest(empty, [])
    with pytest.raises(ConfigError, match="no rows"):
        build_sampling_plan([MixSource(empty)])


def test_mix_cli(tmp_path: Path) -> None:
    a, b = _manifest(tmp_path / "a", 4, "fairface"), _manifest(tmp_path / "b", 2, "lagenda")
    combined = tmp_path / "val" / "all.csv"
    argv = ["mix", f"{a}:2", str(b), "--out", str(tmp_path / "plan.json"), "--manifest-out", str(combined)]
    assert data_main(argv) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["rows"] == 6 and [s["share"] for s in plan["sources"]] == pytest.approx([2 / 3, 1 / 3])
    rows = read_manifest(combined)
    assert len(rows) == 6 and rows[0].path.resolve() == (tmp_path / "a" / "crops" / "0.jpg").resolve()
    assert combined.read_text().splitlines()[1].startswith("../a/crops/0.jpg,0,0,")


def test_prepared_crop_policy(tmp_path: Path) -> None:
    a, b = _manifest(tmp_path / "a", 1, "fairface"), _manifest(tmp_path / "b", 1, "rafdb")
    assert prepared_crop_policy([a, b]) is None
    for folder, margin in ((tmp_path / "a", 0.4), (tmp_path / "b", 0.4)):
        info = {"dataset": "x", "preprocess": {"crop": {"kind": "align5", "margin": margin}}}
        (folder / "prepare.json").write_text(json.dumps(info))
    assert prepared_crop_policy([a, b]) == CropPolicy("align5", 0.4)
    (tmp_path / "b" / "prepare.json").write_text(
        json.dumps({"preprocess": {"crop": {"kind": "box", "margin": 0.4}}})
    )
    with pytest.raises(ConfigError, match="different crop policies"):
        prepared_crop_policy([a, b])
