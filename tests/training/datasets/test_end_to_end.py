"""The issue's done-when: data prepare -> train -> eval, offline, on a tiny Lagenda-layout fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facesdk.training.datasets.cli import main as data_main
from facesdk.training.evaluate import main as eval_main

TINY_CONFIG = """
seed: 0
model:
  backbone: vit_pe_core_tiny_patch16_384
  weights: random
  kwargs: {img_size: 32, patch_size: 8, depth: 1, embed_dim: 48, num_heads: 3}
  tasks: [age, gender, emotion]
  head: {kind: linear}
method: {name: lora, rank: 4, alpha: 8}
data:
  train: [{manifest: PREP/train.csv, weight: 1.0}]
  val: PREP/val.csv
  sampler: uniform
optim: {epochs: 1, batch_size: 4, lr: 1.0e-3}
runtime: {device: cpu, threads: 1}
"""


def test_prepare_train_eval(tmp_path: Path, image_writer) -> None:  # noqa: ANN001
    """The issue's done-when: data prepare -> train -> eval, offline; eval agrees with training's validation."""
    from facesdk.training.cli import main as training_main

    root = tmp_path / "lagenda"
    rows = ["img_name,age,gender,face_x0,face_y0,face_x1,face_y1"]
    for i in range(12):
        image_writer(root / "images" / f"{i}.jpg", size=48, seed=i)
        rows.append(f"{i}.jpg,{5 + 6 * i},{'MF'[i % 2]},8,8,40,40")
    (root / "lagenda_annotation.csv").write_text("\n".join(rows) + "\n")
    prep = tmp_path / "prep"
    assert (
        data_main(
            ["prepare", "lagenda", "--root", str(root), "--out", str(prep), "--crop", "box", "--size", "32"]
        )
        == 0
    )
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("PREP", str(prep)))
    run = tmp_path / "run"
    assert training_main(["train", "--config", str(config), "--out", str(run)]) == 0
    out = tmp_path / "eval"
    assert (
        eval_main(["--model", str(run / "checkpoint"), "--data", str(prep), "--out", str(out), "--pca"]) == 0
    )
    record = json.loads((out / "metrics.json").read_text())
    tasks = record["models"]["run"]["datasets"]["lagenda"]["tasks"]
    best = json.loads((run / "checkpoint" / "checkpoint.json").read_text())["training"]["best"]
    for task in ("age", "gender"):
        assert tasks[task]["count"] == best[task]["n"] == 2
        assert tasks[task]["accuracy"] == pytest.approx(best[task]["acc"])
        assert tasks[task]["balanced_accuracy"] == pytest.approx(best[task]["bacc"])
        assert (out / "pca" / "run" / f"lagenda_{task}.png").stat().st_size > 0
        assert (out / "confusion" / "run" / f"lagenda_{task}.png").stat().st_size > 0
