"""Merge adapters into the backbone weights and prove the merge changed nothing.

peft's adapters (LoRA, DoRA, VeRA on linear layers, LoRA/DoRA on convolutions) merge through
peft; facesdk's conv VeRA layers (``facesdk.training.conv_adapters``) through their own merge.

``merge_adapters`` is what the SDK's torch backend and benchmark import; ``check_merge``
measures the largest absolute logit difference between the merged and unmerged model.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from facesdk.errors import ConfigError

from .errors import ParityError

__all__ = ["MERGE_TOLERANCE", "MergeReport", "merge_adapters", "check_merge", "max_abs_diff"]

log = logging.getLogger(__name__)

MERGE_TOLERANCE = 1e-4
"""Largest absolute logit difference allowed between merged and unmerged models (fp32)."""


def _merge_children(module: nn.Module) -> int:
    """Replace every peft wrapper below ``module`` by its merged base model; return how many."""
    from peft import PeftModel

    merged = 0
    for name, child in list(module.named_children()):
        if isinstance(child, PeftModel):
            setattr(module, name, child.merge_and_unload(safe_merge=True))
            merged += 1
        else:
            merged += _merge_children(child)
    return merged


def _leftover_adapters(model: nn.Module) -> list[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    from facesdk.training.conv_adapters import ConvVeraLayer

    adapters = (BaseTunerLayer, ConvVeraLayer)
    return [name for name, mod in model.named_modules() if isinstance(mod, adapters)]


def merge_adapters(model: nn.Module) -> nn.Module:
    """Return a copy of ``model`` with every peft adapter merged into its base weights (fp32).

    The input model is left untouched (it stays usable for parity checks). A model without
    adapters (full fine-tune, linear probe) comes back as an unchanged copy.

    Args:
        model: A :class:`~facesdk.training.MultiTaskModel` (or any module holding peft models).

    Raises:
        ConfigError: Adapters remain after merging (a method peft cannot merge).
    """
    from facesdk.training.conv_adapters import merge_conv_adapters

    merged = copy.deepcopy(model).float().eval()
    if isinstance(merged, _peft_model_type()):
        merged = merged.merge_and_unload(safe_merge=True)
        count = 1
    else:
        count = _merge_children(merged)
    convs = merge_conv_adapters(merged)
    if convs:
        log.info("merged %d conv VeRA layer(s) into their kernels", convs)
    leftovers = _leftover_adapters(merged)
    if leftovers:
        raise ConfigError(
            f"{len(leftovers)} adapter layer(s) could not be merged (first: {leftovers[0]}); this "
            "adaptation method cannot be exported as a plain model. Export a lora/dora/full checkpoint."
        )
    merged.requires_grad_(False)
    log.info("merged %d peft adapter set(s) into the backbone", count)
    return merged


def _peft_model_type() -> type:
    from peft import PeftModel

    return PeftModel


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
