"""The multi-task loss: per-task cross-entropy over the samples that carry that task's label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facesdk.errors import ConfigError
from facesdk.tasks import MISSING, TaskSpec

__all__ = ["MultiTaskLoss", "balanced_class_weights"]


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``n / (k · n_c)`` per class over the present labels (classes never seen get weight 1)."""
    present = labels[labels != MISSING]
    counts = torch.bincount(present, minlength=num_classes).double()
    weights = torch.where(counts > 0, present.numel() / (num_classes * counts.clamp(min=1)), 1.0)
    return weights.float()


class MultiTaskLoss(nn.Module):
    """Sum over tasks of ``task_weight · CE``; each task's CE averages over its labelled samples.

    Labels equal to ``MISSING`` (-1) are ignored. A task with no label in the batch adds an
    exact zero (still attached to the graph, so backward works and gives zero gradients)
    rather than NaN. With class weights the average is the weighted one, as in
    ``torch.nn.functional.cross_entropy``.

    Args:
        tasks: Tasks in label-column order.
        class_weights: Optional per-task class weight vectors.
        task_weights: Optional per-task loss weights (default 1).
        label_smoothing: Label smoothing of every task's cross-entropy.
    """

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        class_weights: Mapping[str, torch.Tensor] | None = None,
        task_weights: Mapping[str, float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.task_names = [t.name for t in tasks]
        self.task_weights = {t.name: float((task_weights or {}).get(t.name, 1.0)) for t in tasks}
        self.label_smoothing = float(label_smoothing)
        for task in tasks:
            weight = (class_weights or {}).get(task.name)
            if weight is not None and tuple(weight.shape) != (task.num_classes,):
                raise ConfigError(
                    f"class weights of task {task.name!r} need {task.num_classes} values, got {tuple(weight.shape)}"
                )
            self.register_buffer(f"cw_{task.name}", None if weight is None else weight.float())

    def forward(
        self, logits: Mapping[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(total loss, {task: its loss, detached})`` for ``N x T`` labels."""
        total = None
        parts: dict[str, torch.Tensor] = {}
        for j, name in enumerate(self.task_names):
            out = logits[name].float()
            y = labels[:, j]
            valid = y != MISSING
            weight = getattr(self, f"cw_{name}")
            per_sample = F.cross_entropy(
                out,
                y.clamp(min=0),
                reduction="none",
                label_smoothing=self.label_smoothing,
            )
            w = valid.to(out.dtype) if weight is None else weight[y.clamp(min=0)] * valid.to(out.dtype)
            loss = (per_sample * w).sum() / w.sum().clamp(min=1e-12)
            parts[name] = loss.detach()
            term = self.task_weights[name] * loss
            total = term if total is None else total + term
        assert total is not None
        return total, parts
