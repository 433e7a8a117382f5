"""Masked multi-task loss and the task-balanced sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facesdk.tasks import DEFAULT_TASKS
from facesdk.training.losses import MultiTaskLoss
from facesdk.training.sampler import TaskBalancedSampler

NAMES = [t.name for t in DEFAULT_TASKS]


def _logits(n: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {t.name: torch.randn(n, t.num_classes, requires_grad=True) for t in DEFAULT_TASKS}


def test_all_missing_batch_gives_zero_and_finite_gradients() -> None:
    logits = _logits(4)
    loss, parts = MultiTaskLoss(DEFAULT_TASKS)(logits, torch.full((4, 3), -1))
    loss.backward()
    assert loss.item() == 0.0 and all(v.item() == 0.0 for v in parts.values())
    for v in logits.values():
        assert torch.isfinite(v.grad).all() and (v.grad == 0).all()


def test_loss_averages_over_labelled_samples_only() -> None:
    logits = _logits(4)
    labels = torch.tensor([[1, 0, -1], [2, -1, -1], [-1, 1, 3], [-1, -1, -1]])
    _, parts = MultiTaskLoss(DEFAULT_TASKS)(logits, labels)
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(parts["age"], ce(logits["age"][:2], labels[:2, 0]))
    assert torch.allclose(parts["emotion"], ce(logits["emotion"][2:3], labels[2:3, 2]))


def test_class_weights_match_torch() -> None:
    logits = _logits(5)
    labels = torch.tensor([[0, 0, 1], [1, 1, -1], [1, -1, 2], [2, 0, 2], [-1, 1, 0]])
    w = torch.rand(9) + 0.5
    _, parts = MultiTaskLoss(DEFAULT_TASKS, class_weights={"age": w})(logits, labels)
    assert torch.allclose(
        parts["age"], torch.nn.functional.cross_entropy(logits["age"][:4], labels[:4, 0], weight=w)
    )


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_uniform_sampler_covers_each_row_once_across_ranks(world_size: int) -> None:
    labels = np.zeros((12, 3), dtype=np.int64)
    seen = []
    for rank in range(world_size):
        s = TaskBalancedSampler(labels, NAMES, kind="uniform", seed=5, rank=rank, world_size=world_size)
        s.set_epoch(2)
        seen += list(s)
        assert len(list(s)) == len(s)
    assert sorted(seen) == list(range(12))


def test_sampler_is_seeded_by_epoch_and_resumable() -> None:
    labels = np.zeros((20, 3), dtype=np.int64)
    s = TaskBalancedSampler(labels, NAMES, kind="balanced", seed=1)
    s.set_epoch(0)
    a = list(s)
    s.set_epoch(1)
    assert list(s) != a
    s.set_epoch(0, consumed=7)
    assert list(s) == a[7:] and len(s) == 13


def test_balanced_sampler_lifts_a_rare_task() -> None:
    rng = np.random.default_rng(0)
    labels = np.full((2000, 3), -1)
    labels[:, 0] = rng.integers(0, 9, 2000)
    labels[:100, 2] = rng.integers(0, 7, 100)  # emotion on 5% of the rows
    s = TaskBalancedSampler(
        labels, NAMES, kind="balanced", task_shares={"age": 1, "emotion": 1, "gender": 0}, seed=0
    )
    drawn = np.array(list(s))
    assert 0.4 < (drawn < 100).mean() < 0.65


def test_balanced_class_weights_ignore_missing() -> None:
    from facesdk.training.losses import balanced_class_weights

    w = balanced_class_weights(torch.tensor([0, 0, 0, 1, -1, -1]), 3)
    torch.testing.assert_close(w, torch.tensor([4 / (3 * 3), 4 / (3 * 1), 1.0]))


def test_reporter_writes_only_on_the_main_rank(tmp_path) -> None:  # noqa: ANN001
    from facesdk.training.reporting import Reporter

    history = [
        {"epoch": 1, "train_loss": 1.0, "val_age_bacc": 0.5},
        {"epoch": 2, "train_loss": 0.5, "val_age_bacc": 0.7},
    ]
    calls = []
    Reporter(tmp_path / "other", is_main=False).write_history(history)
    Reporter(tmp_path / "other", is_main=False).save(lambda: calls.append(1))
    assert not (tmp_path / "other").exists() and not calls
    main = Reporter(tmp_path / "main")
    main.write_history(history)
    assert (tmp_path / "main" / "log.csv").read_text().splitlines()[0] == "epoch,train_loss,val_age_bacc"
    assert (tmp_path / "main" / "curves.png").stat().st_size > 0


def test_row_weights_scale_draws() -> None:
    labels = np.zeros((200, 3), dtype=np.int64)
    row_weights = np.r_[np.full(100, 3.0), np.full(100, 1.0)]
    s = TaskBalancedSampler(labels, NAMES, kind="balanced", row_weights=row_weights, num_samples=4000, seed=0)
    drawn = np.array(list(s))
    assert 0.7 < (drawn < 100).mean() < 0.8
