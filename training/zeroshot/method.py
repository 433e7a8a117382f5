"""The ``zeroshot`` adaptation method: a CLIP vision tower with text embeddings as heads.

A zero-shot checkpoint's backbone is timm's ``vit_pe_core_*`` built with
``num_classes=<embed dim>``: its classifier is the CLIP image projection. This method
makes that projection L2-normalise its output (the image embedding CLIP compares with
text) and sizes the heads on the embedding width; nothing trains. The checkpoint loader
applies the same method, so a saved zero-shot checkpoint rebuilds to the same module tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facesdk.errors import ConfigError

from ..method_registry import Method, register_method

__all__ = ["NormalizedLinear", "ZeroShot", "METHOD_NAME"]

METHOD_NAME = "zeroshot"
_CONFIG_KEYS = {"clip", "pretrained", "embed_dim", "logit_scale", "prompts", "open_clip"}


class NormalizedLinear(nn.Linear):
    """A linear layer whose output is L2-normalised along the last dimension.

    A subclass (not a wrapper) so that its parameters keep the names ``weight`` and
    ``bias`` of the projection it replaces.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(x), dim=-1)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> NormalizedLinear:
        out = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        out.load_state_dict(linear.state_dict())
        return out


class ZeroShot(Method):
    """Frozen CLIP image tower (projection normalised) with text-embedding heads."""

    name = METHOD_NAME
    mergeable = True  # no adapters: export merges nothing and exports the model as it is

    def normalize(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {unknown} for method 'zeroshot'; known: {sorted(_CONFIG_KEYS)}"
            )
        missing = sorted({"clip", "embed_dim", "logit_scale", "prompts"} - set(config))
        if missing:
            raise ConfigError(
                f"method 'zeroshot' needs {missing}; build zero-shot checkpoints with 'facesdk zeroshot build'"
            )
        out = dict(config)
        out["embed_dim"] = int(out["embed_dim"])
        out["logit_scale"] = float(out["logit_scale"])
        return out

    def apply(self, model: nn.Module, config: Mapping[str, Any]) -> nn.Module:
        cfg = self.normalize(config)
        backbone = model.backbone
        proj = getattr(backbone, "head", None)
        if type(proj) is not nn.Linear or proj.out_features != cfg["embed_dim"]:
            raise ConfigError(
                f"method 'zeroshot' needs a backbone built with num_classes={cfg['embed_dim']} (the CLIP "
                f"image projection as its head); found head {proj!r}"
            )
        backbone.head = NormalizedLinear.from_linear(proj)
        for name, head in model.heads.items():
            layers = list(head) if isinstance(head, nn.Sequential) else []
            if len(layers) != 1 or not isinstance(layers[0], nn.Linear):
                raise ConfigError(f"method 'zeroshot' needs linear heads without dropout; {name!r} is {head}")
            model.heads[name] = nn.Sequential(nn.Linear(cfg["embed_dim"], layers[0].out_features))
        model.requires_grad_(False)
        return model


register_method(ZeroShot())
