"""Merge adapters into the backbone weights and prove the merge changed nothing.

``merge_adapters`` lives in :mod:`facesdk.training.merging` (the torch backend and the bench's
torch rows, both training's, merge too) and is re-exported here; ``check_merge`` measures the
largest absolute logit difference between the merged and unmerged model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from facesdk.training.merging import merge_adapters

from .errors import ParityError

__all__ = ["MERGE_TOLERANCE", "MergeReport", "merge_adapters", "check_merge", "max_abs_diff"]

log = logging.getLogger(__name__)

MERGE_TOLERANCE = 1e-4
"""Largest absolute logit difference allowed between merged and unmerged models (fp32)."""


def max_abs_diff(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Largest absolute difference over every output of two ``{task: logits}`` mappings."""
    if set(a) != set(b):
        raise ParityError(f"outputs differ: {sorted(a)} vs {sorted(b)}")
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@dataclass(frozen=True, slots=True)
class MergeReport:
    """Merged-vs-unmerged parity: the largest absolute logit difference per input source."""

    random_max_abs_diff: float
    validation_max_abs_diff: float | None
    validation_samples: int
    tolerance: float

    @property
    def max_abs_diff(self) -> float:
        return max(self.random_max_abs_diff, self.validation_max_abs_diff or 0.0)

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "random_max_abs_diff": self.random_max_abs_diff,
            "validation_max_abs_diff": self.validation_max_abs_diff,
            "validation_samples": self.validation_samples,
            "tolerance": self.tolerance,
        }


@torch.inference_mode()
def _batches_diff(a: nn.Module, b: nn.Module, batches: Iterable[torch.Tensor]) -> tuple[float, int]:
    worst, count = 0.0, 0
    for x in batches:
        worst = max(worst, max_abs_diff(a(x), b(x)))
        count += int(x.shape[0])
    return worst, count


def check_merge(
    unmerged: nn.Module,
    merged: nn.Module,
    input_size: tuple[int, int],
    validation: torch.Tensor | None = None,
    tolerance: float = MERGE_TOLERANCE,
    samples: int = 8,
    seed: int = 0,
) -> MergeReport:
    """Compare merged and unmerged logits on random inputs and, if given, validation crops.

    Args:
        unmerged: The model with adapters.
        merged: The result of :func:`merge_adapters`.
        input_size: ``(height, width)`` of the model input.
        validation: Optional preprocessed crops ``N x 3 x H x W``.
        tolerance: Largest absolute logit difference allowed.
        samples: Number of random inputs.
        seed: Seed of the random inputs.

    Raises:
        ParityError: The difference exceeds ``tolerance``.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 3, *input_size, generator=gen)
    random_diff, _ = _batches_diff(unmerged.eval(), merged.eval(), [x])
    val_diff, val_count = None, 0
    if validation is not None and len(validation):
        val_diff, val_count = _batches_diff(unmerged, merged, torch.split(validation.float(), 16))
    report = MergeReport(random_diff, val_diff, val_count, tolerance)
    log.info("merged vs unmerged: max |logit diff| %.3g (tolerance %.0e)", report.max_abs_diff, tolerance)
    if report.max_abs_diff > tolerance:
        raise ParityError(
            f"merging the adapters changed the logits by up to {report.max_abs_diff:.3g} (> {tolerance:g}); "
            "the merged model is not the trained model. Check that the checkpoint loads cleanly and that "
            "peft merges this adapter type in fp32; export stopped and wrote nothing."
        )
    return report
