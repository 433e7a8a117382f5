"""Adaptation methods: which parameters train, how adapters attach, how optimizer groups are built.

The built-in methods (full, linear probe, LoRA, DoRA, partial, norm tuning, VeRA, GaLore) live here
and register with :mod:`facesdk.training.method_registry` (re-exported: :data:`METHODS`,
:func:`get_method`, :func:`register_method`, :class:`Method`); MTLoRA and the zero-shot method
register from their own modules, which ``facesdk.training`` imports. The training config picks a
method by name and the checkpoint records its name and full config, so a loader can rebuild the
same module tree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from facesdk.errors import ConfigError

from .backbones import AUTO_TARGET, DEFAULT_TARGET, exact_target, resolve_target, select_targets
from .method_registry import METHODS, Method, get_method, register_method

__all__ = [
    "DEFAULT_TARGET",
    "AdapterConfig",
    "Method",
    "METHODS",
    "get_method",
    "register_method",
    "count_parameters",
]


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    """LoRA / DoRA settings.

    Attributes:
        rank: Rank r of the low-rank update (> 0).
        alpha: Scaling numerator; the update is scaled by alpha / rank.
        dropout: Dropout on the adapter input.
        target: Regex full-matched against module paths of the backbone, or ``auto``: the
            backbone family's default layers (``training/backbones.py``; the checkpoint
            records what ``auto`` resolved to).
        lora_plus_ratio: LoRA+ ratio λ: the B matrices train at λ·lr (1 = plain LoRA).
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target: str = AUTO_TARGET
    lora_plus_ratio: float = 1.0

    def __post_init__(self) -> None:
        if int(self.rank) <= 0:
            raise ConfigError(f"adapter rank must be > 0, got {self.rank}; try rank: 8")
        if float(self.alpha) <= 0:
            raise ConfigError(f"adapter alpha must be > 0, got {self.alpha}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"adapter dropout must be within [0, 1), got {self.dropout}")
        if float(self.lora_plus_ratio) <= 0:
            raise ConfigError(f"lora_plus_ratio must be > 0 (1 disables LoRA+), got {self.lora_plus_ratio}")
        try:
            re.compile(self.target)
        except re.error as exc:
            raise ConfigError(f"adapter target {self.target!r} is not a valid regex: {exc}") from exc

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AdapterConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown adapter option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Total and trainable parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


class FullFineTune(Method):
    """Every weight trains."""

    name = "full"

    def apply(self, model: nn.Module, config: Mapping[str, Any]) -> nn.Module:
        model.requires_grad_(True)
        return model


class LinearProbe(Method):
    """Backbone frozen; only the heads train."""

    name = "linear_probe"

    def apply(self, model: nn.Module, config: Mapping[str, Any]) -> nn.Module:
        model.requires_grad_(False)
        model.heads.requires_grad_(True)
        return model


class LowRankAdapter(Method):
    """LoRA or DoRA through peft on the backbone's linear layers, with LoRA+ groups."""

    def __init__(self, use_dora: bool) -> None:
        self.use_dora = use_dora
        self.name = "dora" if use_dora else "lora"

    def normalize(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return asdict(AdapterConfig.from_mapping(config))

    def apply(self, model: nn.Module, config: Mapping[str, Any]) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        cfg = AdapterConfig.from_mapping(config)
        backbone = model.backbone
        target = resolve_target(cfg.target, backbone)
        select_targets(backbone, target, method=self.name)  # Linear or plain ungrouped Conv2d only
        backbone.requires_grad_(False)
        peft_config = LoraConfig(
            r=int(cfg.rank),
            lora_alpha=float(cfg.alpha),
            lora_dropout=float(cfg.dropout),
            target_modules=target,
            use_dora=self.use_dora,
            bias="none",
        )
        model.backbone = get_peft_model(backbone, peft_config)
        model.heads.requires_grad_(True)
        return model

    def param_groups(
        self, model: nn.Module, config: Mapping[str, Any], lr: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        ratio = float(AdapterConfig.from_mapping(config).lora_plus_ratio)
        lora_b, decay, no_decay = [], [], []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            if ".lora_B." in name:
                lora_b.append(param)
            elif param.ndim >= 2:
                decay.append(param)
            else:
                no_decay.append(param)
        groups = [
            {"name": "lora_B", "params": lora_b, "lr": lr * ratio, "weight_decay": weight_decay},
            {"name": "decay", "params": decay, "lr": lr, "weight_decay": weight_decay},
            {"name": "no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]


class PartialFineTune(Method):
    """The last ``blocks`` transformer blocks, the final norm and the attention pool train.

    The backbone part trains at ``backbone_lr_mult`` times the heads' learning rate (the
    reference recipe: last four blocks plus the attention pool at a tenth of the heads' rate).
    """

    name = "partial"

    def normalize(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(config) - {"blocks", "backbone_lr_mult"})
        if unknown:
            raise ConfigError(
                f"unknown option(s) {unknown} for method 'partial'; known: blocks, backbone_lr_mult"
            )
        out = {
            "blocks": int(config.get("blocks", 4)),
            "backbone_lr_mult": float(config.get("backbone_lr_mult", 0.1)),
        }
        if out["blocks"] < 0:
            raise ConfigError(f"partial: blocks must be >= 0, got {out['blocks']}")
        if out["backbone_lr_mult"] <= 0:
            raise ConfigError(f"partial: backbone_lr_mult must be > 0, got {out['backbone_lr_mult']}")
        return out

    def apply(self, model: nn.Module, config: Mapping[str, Any]) -> nn.Module:
        cfg = self.normalize(config)
        backbone = model.backbone
        backbone.requires_grad_(False)
        blocks = getattr(backbone, "blocks", None)
        if blocks is None:
            raise ConfigError(
                f"method 'partial' needs a backbone with .blocks; {type(backbone).__name__} has none"
            )
        if cfg["blocks"] > len(blocks):
            raise ConfigError(f"partial: blocks={cfg['blocks']} but the backbone has only {len(blocks)}")
        for block in list(blocks)[len(blocks) - cfg["blocks"] :]:
            block.requires_grad_(True)
        for name in ("norm", "fc_norm", "attn_pool", "head_drop"):
            part = getattr(backbone, name, None)
            if isinstance(part, nn.Module):
                part.requires_grad_(True)
        model.heads.requires_grad_(True)
        return model

    def param_groups(
        self, model: nn.Module, config: Mapping[str, Any], lr: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        mult = self.normalize(config)["backbone_lr_mult"]
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, param in model.named_parameters():
            if param.requires_grad:
                groups.setdefault((name.startswith("backbone."), param.ndim >= 2), []).append(param)
        out = []
        for (in_backbone, decays), params in sorted(groups.items()):
            out.append(
                {
                    "name": f"{'backbone' if in_backbone else 'heads'}_{'decay' if decays else 'no_decay'}",
                    "params": params,
                    "lr": lr * (mult if in_backbone else 1.0),
                    "weight_decay": weight_decay if decays else 0.0,
                }
            )
        return out


NORM_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


class NormTuning(Method):
    """Only normalisation weights and biases (and the heads) train."""

    name = "norm"

    def apply(self, model: nn.Module, config: Mapping[str, Any]) -> nn.Module:
        model.requires_grad_(False)
        found = 0
        for module in model.backbone.modules():
            if isinstance(module, NORM_TYPES):
                module.requires_grad_(True)
                found += sum(p.numel() for p in module.parameters(recurse=False))
        if not found:
            raise ConfigError("method 'norm' found no normalisation layer with parameters in the backbone")
        model.heads.requires_grad_(True)
        return model


@dataclass(frozen=True, slots=True)
class VeraOptions:
    """VeRA settings: shared frozen random projections of rank ``rank``, trained scaling vectors."""

    rank: int = 256
    target: str = AUTO_TARGET
    dropout: float = 0.0
    d_initial: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.rank) <= 0:
            raise ConfigError(f"vera rank must be > 0, got {self.rank}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"vera dropout must be within [0, 1), got {self.dropout}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> VeraOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown vera option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


class Vera(Method):
    """VeRA: frozen shared random A/B, trained per-layer scaling vectors d and b.

    Linear layers go through peft's VeRA; convolutions (which peft's VeRA does not adapt)
    through :class:`~facesdk.training.conv_adapters.ConvVeraLayer`, with its own shared projections.
    """

    name = "vera"

    def normalize(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return asdict(VeraOptions.from_mapping(config))

    def apply(self, model: nn.Module, config: Mapping[str, Any]) -> nn.Module:
        from peft import VeraConfig, get_peft_model

        from .conv_adapters import apply_conv_vera

        cfg = VeraOptions.from_mapping(config)
        backbone = model.backbone
        names = select_targets(backbone, resolve_target(cfg.target, backbone), grouped=True, method="vera")
        convs = [n for n in names if isinstance(backbone.get_submodule(n), nn.Conv2d)]
        linear = [n for n in names if n not in set(convs)]
        if convs and float(cfg.dropout) > 0:
            raise ConfigError(
                "vera: dropout is not supported on conv layers (ΔW is added to the kernel); set dropout: 0"
            )
        backbone.requires_grad_(False)
        if convs:  # peft's VeRA gets the exact linear layers only
            apply_conv_vera(backbone, convs, int(cfg.rank), float(cfg.d_initial), int(cfg.seed))
        if not linear:
            model.heads.requires_grad_(True)
            return model
        peft_config = VeraConfig(
            r=int(cfg.rank),
            target_modules=exact_target(linear),
            vera_dropout=float(cfg.dropout),
            d_initial=float(cfg.d_initial),
            projection_prng_key=int(cfg.seed),
            save_projection=True,
        )
        model.backbone = get_peft_model(model.backbone, peft_config)
        model.heads.requires_grad_(True)
        return model


class GaLore(Method):
    """GaLore: an optimizer choice over ``full`` or ``partial`` training.

    The chosen base method decides what trains; every trainable backbone matrix then gets
    its Adam moments in a rank-``rank`` projection of its gradient (see ``galore.py``).
    """

    name = "galore"
    BASES = ("full", "partial")

    def normalize(self, config: Mapping[str, Any]) -> dict[str, Any]:
        config = dict(config)
        base = str(config.pop("base", "full"))
        if base not in self.BASES:
            raise ConfigError(f"galore: base must be one of {self.BASES}, got {base!r}")
        own = {"rank": 128, "update_proj_gap": 200, "scale": 0.25}
        for key in list(own):
            if key in config:
                own[key] = type(own[key])(config.pop(key))
        if own["rank"] <= 0 or own["update_proj_gap"] <= 0 or own["scale"] <= 0:
            raise ConfigError(f"galore: rank, update_proj_gap and scale must be > 0, got {own}")
        return {"base": base, **own, **METHODS[base].normalize(config)}

    @staticmethod
    def _split(config: Mapping[str, Any]) -> tuple[Method, dict[str, Any]]:
        base = METHODS[config["base"]]
        rest = {k: v for k, v in config.items() if k not in ("base", "rank", "update_proj_gap", "scale")}
        return base, rest

    def apply(self, model: nn.Module, config: Mapping[str, Any]) -> nn.Module:
        base, rest = self._split(self.normalize(config))
        return base.apply(model, rest)

    def param_groups(
        self, model: nn.Module, config: Mapping[str, Any], lr: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        cfg = self.normalize(config)
        base, rest = self._split(cfg)
        options = {"rank": cfg["rank"], "update_proj_gap": cfg["update_proj_gap"], "scale": cfg["scale"]}
        heads = {id(p) for p in model.heads.parameters()}
        groups = []
        for group in base.param_groups(model, rest, lr, weight_decay):
            projected = [p for p in group["params"] if p.ndim >= 2 and id(p) not in heads]
            others = [p for p in group["params"] if not (p.ndim >= 2 and id(p) not in heads)]
            if projected:
                groups.append(
                    {**group, "name": f"{group['name']}_galore", "params": projected, "galore": options}
                )
            if others:
                groups.append({**group, "params": others})
        return groups

    def optimizer(self, groups: list[dict[str, Any]], config: Mapping[str, Any], **kwargs: Any) -> Any:
        from .galore import GaLoreAdamW

        return GaLoreAdamW(groups, **kwargs)


for _method in (
    LowRankAdapter(use_dora=False),
    LowRankAdapter(use_dora=True),
    FullFineTune(),
    LinearProbe(),
    PartialFineTune(),
    NormTuning(),
    Vera(),
    GaLore(),
):
    register_method(_method)
