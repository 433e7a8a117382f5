"""Merge peft adapters (and facesdk's conv VeRA layers) into the backbone weights.

peft's adapters (LoRA, DoRA, VeRA on linear layers, LoRA/DoRA on convolutions) merge through
peft; facesdk's conv VeRA layers (:mod:`.conv_adapters`) through their own merge. Training owns
this, so the torch backend and the bench's torch rows (both training's) can merge without
importing the export stage; :mod:`facesdk.export.merge` re-exports it and checks the merge.
"""

from __future__ import annotations

import copy
import logging

from torch import nn

from facesdk.errors import ConfigError

__all__ = ["merge_adapters"]

log = logging.getLogger(__name__)


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

    from .conv_adapters import ConvVeraLayer

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
    from .conv_adapters import merge_conv_adapters

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
