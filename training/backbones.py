"""Which layers of a backbone get adapters: per-family defaults for ViTs and convolutional networks.

A method's ``target: auto`` (the default) is resolved here, once the backbone is built, into
the exact set of layers that get adapters, and the checkpoint records that resolved target,
so a loader rebuilds the same adapters even if a later facesdk changes a family's defaults.

- ViTs (the Perception Encoder family): the blocks' ``qkv``/``proj``/``fc1``/``fc2`` linear layers
  (:data:`DEFAULT_TARGET`).
- Convolutional families (:data:`CNN_FAMILIES`, keyed by timm's model class): the pointwise and
  regular convolutions (and ConvNeXt's MLP layers); the stem and every depthwise convolution are
  left out. See ``docs/backbones.md`` for why.
- Any other timm model: every plain ``Conv2d`` with ``groups == 1`` that does not read the
  3-channel image, and every ``Linear``.

A layer can carry an adapter when it is an ``nn.Linear`` or a *plain* ``nn.Conv2d``: exactly that
class (timm's ``Conv2dSame`` pads inside its forward, which peft's conv adapters do not copy), zero
padding and no dilation (peft builds its adapter convolution without the base layer's dilation).

Two helpers make random-init CNNs behave like pretrained ones in tests and benchmarks:
:func:`estimate_batchnorm_stats` and :func:`damp_residual_branches`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

from facesdk.errors import ConfigError

__all__ = [
    "AUTO_TARGET",
    "CNN_FAMILIES",
    "DEFAULT_TARGET",
    "family_of",
    "resolve_target",
    "select_targets",
    "exact_target",
    "is_grouped_conv",
    "estimate_batchnorm_stats",
    "damp_residual_branches",
]

AUTO_TARGET = "auto"
"""The ``target`` value that means "this backbone family's default layers"."""

DEFAULT_TARGET = r"blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"
"""Full-path regex for the transformer blocks' linear layers only (what ``auto`` means on a ViT).

peft full-matches a string pattern against each module's whole dotted path, so the
block prefix keeps the patch embedding and the attention pool (``attn_pool.*``) out.
"""

CNN_FAMILIES: dict[str, str] = {
    # conv1..conv3 of every bottleneck/basic block and the projection shortcut; the 7x7 stem
    # (conv1 at the root) is left out. ResNeXt's grouped conv2 is dropped by the plain-layer rule.
    "ResNet": r"layer\d+\.\d+\.(conv\d|downsample\.\d)",
    # the inverted-bottleneck MLP (1x1 convs in atto..nano, Linear from tiny up) and the 2x2
    # downsampling convs between stages; the 7x7 depthwise conv_dw and the 4x4 stem are left out.
    "ConvNeXt": r"stages\.\d+\.(blocks\.\d+\.mlp\.fc[12]|downsample\.1)",
    # expansion (conv_pw) and projection (conv_pwl) 1x1 convs and the 1x1 head conv; the stem,
    # the depthwise conv_dw and the squeeze-excitation gates are left out.
    "EfficientNet": r"(blocks\.\d+\.\d+\.conv_(pw|pwl)|conv_head)",
    # timm's MobileNetV3 class builds MobileNetV3 and MobileNetV4: regular and pointwise convs of
    # ConvBnAct (conv), EdgeResidual (conv_exp, conv_pwl), inverted residuals (conv_pw, conv_pwl),
    # universal inverted bottlenecks (pw_exp.conv, pw_proj.conv) and the 1x1 head conv.
    "MobileNetV3": (
        r"(blocks\.\d+\.\d+\.(conv|conv_exp|conv_pw|conv_pwl|pw_exp\.conv|pw_proj\.conv)|conv_head)"
    ),
}
"""Default adapter targets per timm model class, as regexes full-matched against module paths."""


def _unwrap(backbone: nn.Module) -> nn.Module:
    base = getattr(backbone, "get_base_model", None)
    return base() if callable(base) else backbone


def family_of(backbone: nn.Module) -> str:
    """``"vit"``, a key of :data:`CNN_FAMILIES`, or ``"other"``."""
    model = _unwrap(backbone)
    name = type(model).__name__
    if name in CNN_FAMILIES:
        return name
    pattern = re.compile(DEFAULT_TARGET)
    if any(pattern.fullmatch(n) for n, m in model.named_modules() if isinstance(m, nn.Linear)):
        return "vit"
    return "other"


def is_grouped_conv(module: nn.Module) -> bool:
    """A convolution with ``groups > 1`` (depthwise when groups equals the channel count)."""
    return isinstance(module, nn.Conv2d) and module.groups > 1


def _why_not_plain(module: nn.Module) -> str | None:
    """Why ``module`` cannot carry an adapter, or None when it can."""
    if type(module) is nn.Linear:
        return None
    if not isinstance(module, nn.Conv2d):
        return f"a {type(module).__name__}, not a Linear or Conv2d"
    if type(module) is not nn.Conv2d:
        return f"a {type(module).__name__} (a Conv2d subclass with its own forward, e.g. 'same' padding)"
    if module.padding_mode != "zeros" or tuple(module.dilation) != (1, 1):
        return f"a Conv2d with padding_mode={module.padding_mode!r}, dilation={module.dilation}"
    return None


def _default_names(backbone: nn.Module, family: str) -> list[str]:
    """The layers ``target: auto`` selects on a convolutional or unknown backbone."""
    if family in CNN_FAMILIES:
        pattern = re.compile(CNN_FAMILIES[family])
        chosen = [n for n, _ in backbone.named_modules() if pattern.fullmatch(n)]
    else:
        chosen = [
            n
            for n, m in backbone.named_modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.in_channels != 3)
        ]
    modules = dict(backbone.named_modules())
    return [n for n in chosen if _why_not_plain(modules[n]) is None and not is_grouped_conv(modules[n])]


def exact_target(names: Iterable[str]) -> str:
    """A regex that full-matches exactly ``names`` (what peft's ``target_modules`` receives)."""
    names = list(names)
    if not names:
        raise ConfigError("no layer to adapt")
    return "(" + "|".join(re.escape(n) for n in names) + ")"


def resolve_target(target: str, backbone: nn.Module) -> str:
    """Turn ``auto`` into this backbone's default target; any other value is returned unchanged.

    ViTs resolve to the blocks' linear-layer regex; convolutional and unknown backbones to an
    exact list of layer paths (see the module docstring).

    Raises:
        ConfigError: ``auto`` found no layer to adapt.
    """
    if target != AUTO_TARGET:
        return target
    model = _unwrap(backbone)
    family = family_of(model)
    if family == "vit":
        return DEFAULT_TARGET
    names = _default_names(model, family)
    if not names:
        raise ConfigError(
            f"target 'auto' found no Linear or plain ungrouped Conv2d layer in {type(model).__name__}; "
            "give method.target, a regex over the backbone's module paths"
        )
    return exact_target(names)


def select_targets(backbone: nn.Module, target: str, *, grouped: bool = False, method: str = "") -> list[str]:
    """The module paths ``target`` full-matches, checked: each must be able to carry an adapter.

    Args:
        backbone: The timm model (not yet wrapped by peft).
        target: A resolved regex (not ``auto``).
        grouped: Whether grouped (depthwise) convolutions are allowed.
        method: Method name for the messages.

    Raises:
        ConfigError: Nothing matches, or a matched layer cannot carry this method's adapter.
    """
    if target == AUTO_TARGET:
        target = resolve_target(target, backbone)
    pattern = re.compile(target)
    matched = [(n, m) for n, m in backbone.named_modules() if n and pattern.fullmatch(n)]
    if not matched:
        layers = [n for n, m in backbone.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        raise ConfigError(
            f"{method}: target {target!r} matches no layer of the backbone; its Linear/Conv2d layers "
            f"include {layers[:6]} (or leave target at 'auto')"
        )
    for name, module in matched:
        why = _why_not_plain(module)
        if why is not None:
            raise ConfigError(
                f"{method}: target matches {name!r}, {why}; only Linear and plain Conv2d layers "
                "take adapters. Narrow method.target"
            )
        if is_grouped_conv(module) and not grouped:
            raise ConfigError(
                f"{method}: target matches {name!r}, a grouped conv (groups={module.groups}). peft's conv "
                "LoRA/DoRA cannot merge into a grouped kernel (its A mixes every input channel) and needs "
                "rank divisible by groups; leave depthwise convs out of method.target, or use method "
                "'vera' (merges into grouped kernels) or 'norm'"
            )
    return [n for n, _ in matched]


@torch.no_grad()
def estimate_batchnorm_stats(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Set every BatchNorm's running statistics to the mean and variance over ``batches``.

    For random-init backbones in tests and benchmarks only: their statistics (mean 0, variance 1)
    normalise nothing, so activations vanish or grow through the depth. A pretrained backbone
    brings real statistics, which training keeps frozen (see :meth:`MultiTaskModel.train`).

    Returns:
        The number of BatchNorm layers updated.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was_training = model.training
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch
        m.train()
    for x in batches:
        model(x)
    for m, (momentum, training) in zip(norms, saved, strict=True):
        m.momentum = momentum
        m.train(training)
    model.train(was_training)
    return len(norms)


@torch.no_grad()
def damp_residual_branches(model: nn.Module, factor: float = 0.25) -> int:
    """Scale the last BatchNorm of every inverted-residual branch (timm's ``has_skip`` blocks with ``bn3``).

    For random-init EfficientNets in tests and benchmarks only: with estimated statistics their
    residual branches add unit-variance noise block after block and the network turns chaotic
    (merged-vs-unmerged and ONNX-vs-torch differ by 1e-4 to 1e3 from float rounding alone). Trained
    networks keep small branch scales; timm's ``zero_init_last`` does the same for ResNets.

    Returns:
        The number of branches scaled.
    """
    count = 0
    for module in model.modules():
        last = getattr(module, "bn3", None)
        if getattr(module, "has_skip", False) and isinstance(last, nn.modules.batchnorm._BatchNorm):
            last.weight.mul_(float(factor))
            count += 1
    return count
