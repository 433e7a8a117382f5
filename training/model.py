"""The multi-task model: one timm backbone, one classifier head per task."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
from torch import nn

from facesdk.contract.checkpoint import BackboneSpec, HeadSpec
from facesdk.errors import ConfigError
from facesdk.preprocess import CropPolicy, Preprocess
from facesdk.tasks import TaskSpec

from .hub import hub_fetch

__all__ = ["MultiTaskModel", "create_backbone", "preprocess_from_backbone", "build_head", "DEFAULT_BACKBONE"]

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "vit_pe_core_tiny_patch16_384"


def create_backbone(spec: BackboneSpec, load_weights: bool = True) -> nn.Module:
    """Build a timm backbone without its classifier (``num_classes=0``: forward gives pooled features).

    Args:
        spec: timm name, weights source and extra ``create_model`` kwargs.
        load_weights: Load the pretrained weights named by ``spec.weights``; a checkpoint
            loader passes False because the checkpoint holds every weight itself.
    """
    if not timm.is_model(spec.name):
        close = timm.list_models(f"*{spec.name.split('_')[0]}*")[:8]
        raise ConfigError(f"unknown timm backbone {spec.name!r}; similar names: {close or 'none'}")
    kwargs: dict[str, Any] = {"num_classes": 0, "exportable": True, **dict(spec.kwargs)}
    pretrained = load_weights and spec.weights != "random"
    if pretrained and spec.weights.startswith("file:"):
        overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
        kwargs["pretrained_cfg_overlay"] = {**overlay, "file": spec.weights[len("file:") :]}
    hub = pretrained and not spec.weights.startswith("file:")
    guard = (
        hub_fetch(
            f"the pretrained weights of {spec.name} (weights: {spec.weights})",
            "set model.weights to file:PATH (a local weights file) or to random",
        )
        if hub
        else contextlib.nullcontext()
    )
    try:
        with guard:
            return timm.create_model(spec.name, pretrained=pretrained, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"backbone {spec.name!r} rejected its kwargs {dict(spec.kwargs)}: {exc}") from exc


def preprocess_from_backbone(backbone: nn.Module, crop: CropPolicy | None = None) -> Preprocess:
    """Take input size, mean, std and interpolation from the backbone's pretrained config.

    The input size follows the built model (``img_size`` overrides change it), not the
    config of the weights it was named after. Convolutional backbones take any input size;
    theirs comes from the pretrained config, which ``model.kwargs`` can override with timm's
    ``pretrained_cfg_overlay: {input_size: [3, H, W]}`` (recorded with the backbone's kwargs).
    """
    cfg = timm.data.resolve_data_config({}, model=backbone)
    size = tuple(cfg["input_size"][1:])
    patch_embed = getattr(backbone, "patch_embed", None)
    if patch_embed is not None and getattr(patch_embed, "img_size", None):
        size = tuple(int(v) for v in patch_embed.img_size)
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in ("bicubic", "bilinear", "nearest", "area"):
        interpolation = "bicubic"
    return Preprocess(
        input_size=size,  # type: ignore[arg-type]
        mean=tuple(cfg["mean"]),  # type: ignore[arg-type]
        std=tuple(cfg["std"]),  # type: ignore[arg-type]
        interpolation=interpolation,
        crop=crop or CropPolicy(),
    )


def build_head(in_features: int, num_classes: int, spec: HeadSpec) -> nn.Module:
    """A linear head, or an MLP with one GELU hidden layer."""
    layers: list[nn.Module] = [nn.Dropout(spec.dropout)] if spec.dropout > 0 else []
    if spec.kind == "linear":
        layers.append(nn.Linear(in_features, num_classes))
    else:
        layers += [nn.Linear(in_features, spec.hidden), nn.GELU(), nn.Linear(spec.hidden, num_classes)]
    return nn.Sequential(*layers)


def _num_features(backbone: nn.Module) -> int:
    # the pooled width: timm's head_hidden_size differs from num_features where a head
    # layer sits after the pooling (MobileNetV3/V4's conv_head: 960 -> 1280)
    features = getattr(backbone, "head_hidden_size", None) or getattr(backbone, "num_features", None)
    if isinstance(features, int) and features > 0:
        return features
    base = getattr(backbone, "get_base_model", None)
    if base is not None:
        return _num_features(base())
    raise ConfigError(f"cannot tell the feature width of backbone {type(backbone).__name__}")


class MultiTaskModel(nn.Module):
    """A backbone with one head per task; ``forward(x)`` returns ``{task: logits}``.

    Attributes:
        backbone: The timm model (possibly wrapped by peft with adapters).
        heads: One head per task, in task order.
        task_names: Task names in output order.
    """

    def __init__(self, backbone: nn.Module, tasks: Sequence[TaskSpec], heads: Mapping[str, HeadSpec]) -> None:
        super().__init__()
        self.backbone = backbone
        self.task_names = [t.name for t in tasks]
        width = _num_features(backbone)
        self.heads = nn.ModuleDict({t.name: build_head(width, t.num_classes, heads[t.name]) for t in tasks})

    def train(self, mode: bool = True) -> MultiTaskModel:
        """Set training mode; BatchNorm layers stay in eval mode whatever ``mode`` is.

        BatchNorm policy: running statistics are frozen at their pretrained values for every
        method. Face batches are small and unevenly mixed, the resume state holds trainable
        parameters only, and the export folds exactly these statistics into the kernels.
        The affine weight and bias still train where the method says (``norm``, ``full``).
        """
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        if isinstance(features, dict):  # a branched backbone (MTLoRA) gives one feature path per task
            return {name: self.heads[name](features[name]) for name in self.task_names}
        return {name: self.heads[name](features) for name in self.task_names}
