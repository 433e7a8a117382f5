"""Every adaptation method trains on the smoke config, saves, reloads and records its trainable share.

The runs come from the session fixture ``method_runs`` (``tests/conftest.py``): one epoch of
``configs/smoke.yaml`` shrunk to 48 images, trained in this process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from facesdk.training import build_model, load_checkpoint_with_manifest
from facesdk.training.methods import METHODS


def test_every_registered_method_is_covered(trained_method_names) -> None:  # noqa: ANN001
    trained, left_out = trained_method_names
    assert set(METHODS) == trained | left_out


def test_trains_saves_and_reloads_identical_logits(method_runs, trained_method: str) -> None:  # noqa: ANN001
    run = method_runs[trained_method]
    model, manifest = load_checkpoint_with_manifest(run.out / "checkpoint")
    assert manifest.method.name == trained_method
    with torch.no_grad():
        again = model(run.probe)
    assert list(again) == ["age", "gender", "emotion"]
    for task, logits in run.logits.items():
        torch.testing.assert_close(again[task], logits, rtol=0, atol=0)

    # it trained: the trainable weights moved, the frozen ones did not
    torch.manual_seed(manifest.training["seed"])  # the trainer seeds torch just before building
    initial, _, _ = build_model(
        manifest.backbone, manifest.tasks, manifest.heads, manifest.method, load_weights=False
    )
    start = dict(initial.named_parameters())
    moved = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            moved.append(not torch.equal(param, start[name]))
        else:
            assert torch.equal(param, start[name]), f"frozen {name} changed"
    assert moved and any(moved)


def test_trainable_share_is_logged_and_recorded(method_runs, trained_method: str) -> None:  # noqa: ANN001
    run = method_runs[trained_method]
    record = json.loads((Path(run.out) / "checkpoint" / "checkpoint.json").read_text())
    trainable, total = record["params"]["trainable"], record["params"]["total"]
    model, _ = load_checkpoint_with_manifest(run.out / "checkpoint")
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total == sum(p.numel() for p in model.parameters())
    assert 0 < trainable <= total
    assert record["training"]["trainable_share"] == pytest.approx(trainable / total)
    pattern = rf"^{trained_method}: {trainable} of {total} parameters train \((\d+\.\d+)%\)"
    said = [m for m in map(re.compile(pattern).match, run.log) if m]
    assert said, f"no start-of-run share line in {run.log[:3]}"
    assert float(said[0].group(1)) == pytest.approx(100 * trainable / total, abs=0.006)


def test_partial_trains_the_backbone_at_its_lr_multiplier(method_runs) -> None:  # noqa: ANN001
    lrs = method_runs["partial"].lrs
    heads = [lr for name, lr in lrs.items() if name.startswith("heads")]
    backbone = [lr for name, lr in lrs.items() if name.startswith("backbone")]
    assert heads and backbone
    assert all(lr == pytest.approx(0.1 * heads[0]) for lr in backbone)


@pytest.mark.parametrize("method", ["full", "mtlora"])
def test_gradient_checkpointing_gives_the_same_weights(
    method_runs,  # noqa: ANN001
    smoke_trainer,  # noqa: ANN001
    method: str,
    tmp_path: Path,
) -> None:
    run = smoke_trainer(method, tmp_path / method, "runtime.grad_checkpointing=true")
    assert run.recomputed and not method_runs[method].recomputed
    for task, logits in method_runs[method].logits.items():
        torch.testing.assert_close(run.logits[task], logits, rtol=0, atol=1e-6)
