"""MTLoRA: a shared trunk with task-agnostic DoRA, and one task-specific LoRA branch per task.

The last ``branch_blocks`` transformer blocks, the final norm and the attention pool are
copied once per task; each copy gets its own LoRA. Export merges every adapter into its own
copy, so the deployed graph keeps the branches as explicit sub-graphs: it costs the trunk
plus ``len(tasks)`` times the branch, more than a fully merged model (the export manifest's
``complexity`` and ``benchmarks/methods.py`` show by how much).

Works with timm's Eva-family ViTs (the Perception Encoder ``vit_pe_core_*``), whose blocks
take the rotary embedding as an argument.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from facesdk.errors import ConfigError

from .backbones import DEFAULT_TARGET
from .method_registry import Method, register_method
from .methods import LowRankAdapter

__all__ = ["MTLoRAOptions", "BranchedBackbone", "MTLoRA"]

BRANCH_TARGET = r"(blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))|attn_pool\.(q|kv|proj|mlp\.fc1|mlp\.fc2))"


@dataclass(frozen=True, slots=True)
class MTLoRAOptions:
    """Shared DoRA (``rank``, ``alpha``) on the trunk, LoRA (``task_rank``, ``task_alpha``) per branch."""

    rank: int = 8
    alpha: float = 16.0
    task_rank: int = 8
    task_alpha: float = 16.0
    dropout: float = 0.0
    branch_blocks: int = 1
    lora_plus_ratio: float = 1.0

    def __post_init__(self) -> None:
        if int(self.rank) <= 0 or int(self.task_rank) <= 0:
            raise ConfigError(f"mtlora: rank and task_rank must be > 0, got {self.rank} and {self.task_rank}")
        if int(self.branch_blocks) < 1:
            raise ConfigError(f"mtlora: branch_blocks must be >= 1, got {self.branch_blocks}")
        if float(self.lora_plus_ratio) <= 0:
            raise ConfigError(f"mtlora: lora_plus_ratio must be > 0, got {self.lora_plus_ratio}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MTLoRAOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown mtlora option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


class _Branch(nn.Module):
    """The task-specific tail: blocks, final norm, attention pool, fc norm."""

    def __init__(self, vit: nn.Module, first: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(copy.deepcopy(list(vit.blocks)[first:]))
        self.norm = copy.deepcopy(vit.norm)
        self.attn_pool = copy.deepcopy(vit.attn_pool)
        self.fc_norm = copy.deepcopy(vit.fc_norm)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None = None) -> torch.Tensor:
        x = _run_blocks(self.blocks, x, rope, self.grad_checkpointing)
        return self.fc_norm(self.attn_pool(self.norm(x)))


def _run_blocks(
    blocks: Sequence[nn.Module], x: torch.Tensor, rope: torch.Tensor | None, recompute: bool
) -> torch.Tensor:
    """Run Eva blocks in order; with ``recompute`` their activations are recomputed in backward."""
    for block in blocks:
        if recompute and torch.is_grad_enabled():
            x = checkpoint(block, x, rope=rope, use_reentrant=False)
        else:
            x = block(x, rope=rope)
    return x


class BranchedBackbone(nn.Module):
    """Trunk (patch embedding .. block N-k-1) shared; one :class:`_Branch` per task.

    ``forward`` returns ``{task: pooled features}``.
    """

    def __init__(self, vit: nn.Module, task_names: Sequence[str], branch_blocks: int) -> None:
        super().__init__()
        for attr in ("blocks", "_pos_embed", "patch_embed", "norm_pre", "attn_pool"):
            if getattr(vit, attr, None) is None:
                raise ConfigError(
                    f"mtlora needs an Eva-family ViT with an attention pool (vit_pe_core_*); "
                    f"{type(vit).__name__} has no {attr!r}"
                )
        depth = len(vit.blocks)
        if branch_blocks >= depth:
            raise ConfigError(
                f"mtlora: branch_blocks={branch_blocks} must be below the backbone depth {depth}"
            )
        first = depth - branch_blocks
        self.branches = nn.ModuleDict({name: _Branch(vit, first) for name in task_names})
        vit.blocks = nn.Sequential(*list(vit.blocks)[:first])
        vit.norm, vit.attn_pool, vit.fc_norm = nn.Identity(), None, nn.Identity()
        self.trunk = vit
        self.num_features = vit.num_features
        self.grad_checkpointing = False

    def _trunk(self) -> nn.Module:
        base = getattr(self.trunk, "get_base_model", None)
        return base() if base is not None else self.trunk

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward, in the trunk and in every branch."""
        self.grad_checkpointing = bool(enable)
        for module in self.branches.modules():
            if isinstance(module, _Branch):
                module.grad_checkpointing = bool(enable)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        vit = self._trunk()
        x = vit.patch_embed(x)
        x, rope = vit._pos_embed(x)
        x = vit.norm_pre(x)
        x = _run_blocks(vit.blocks, x, rope, self.grad_checkpointing)
        return {name: branch(x, rope) for name, branch in self.branches.items()}


class MTLoRA(Method):
    """Task-agnostic DoRA on the trunk, task-specific LoRA on each task's branch."""

    name = "mtlora"

    def normalize(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return asdict(MTLoRAOptions.from_mapping(config))

    def apply(self, model: nn.Module, config: Mapping[str, Any]) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        cfg = MTLoRAOptions.from_mapping(config)
        vit = model.backbone
        vit.requires_grad_(False)
        branched = BranchedBackbone(vit, model.task_names, int(cfg.branch_blocks))
        if len(branched.trunk.blocks):
            trunk_cfg = LoraConfig(
                r=int(cfg.rank), lora_alpha=float(cfg.alpha), lora_dropout=float(cfg.dropout),
                target_modules=DEFAULT_TARGET, use_dora=True, bias="none",
            )  # fmt: skip
            branched.trunk = get_peft_model(branched.trunk, trunk_cfg)
        for name in list(branched.branches):
            branch_cfg = LoraConfig(
                r=int(cfg.task_rank), lora_alpha=float(cfg.task_alpha), lora_dropout=float(cfg.dropout),
                target_modules=BRANCH_TARGET, bias="none",
            )  # fmt: skip
            branched.branches[name] = get_peft_model(branched.branches[name], branch_cfg)
        model.backbone = branched
        model.heads.requires_grad_(True)
        return model

    def param_groups(
        self, model: nn.Module, config: Mapping[str, Any], lr: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        ratio = {"lora_plus_ratio": MTLoRAOptions.from_mapping(config).lora_plus_ratio}
        return LowRankAdapter(use_dora=True).param_groups(model, ratio, lr, weight_decay)


register_method(MTLoRA())
