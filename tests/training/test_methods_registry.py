"""Methods beyond LoRA/DoRA: partial, norm, VeRA, GaLore — what trains, groups, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
from facesdk.errors import ConfigError
from facesdk.tasks import DEFAULT_TASKS
from facesdk.training import build_model, load_checkpoint, save_checkpoint
from facesdk.training.galore import GaLoreAdamW
from facesdk.training.methods import METHODS, get_method

BACKBONE = BackboneSpec("vit_pe_core_tiny_patch16_384", "random", {"img_size": 32, "depth": 2})
HEADS = {t.name: HeadSpec() for t in DEFAULT_TASKS}


def _build(name: str, config: dict | None = None):
    torch.manual_seed(0)
    return build_model(BACKBONE, DEFAULT_TASKS, HEADS, MethodSpec(name, config or {}))


def _trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_registry_lists_every_method() -> None:
    assert {"lora", "dora", "full", "linear_probe", "partial", "norm", "vera", "galore"} <= set(METHODS)
    with pytest.raises(ConfigError, match="unknown adaptation method 'lorax'"):
        get_method("lorax")


def test_partial_trains_last_blocks_pool_and_heads_at_scaled_lr() -> None:
    model, _, spec = _build("partial", {"blocks": 1, "backbone_lr_mult": 0.1})
    names = _trainable(model)
    assert any(n.startswith("backbone.blocks.1.") for n in names)
    assert not any(n.startswith("backbone.blocks.0.") for n in names)
    assert any(n.startswith("backbone.attn_pool.") for n in names)
    assert not any(n.startswith("backbone.patch_embed") for n in names)
    groups = get_method("partial").param_groups(model, spec.config, 1e-3, 0.05)
    for group in groups:
        expected = 1e-4 if group["name"].startswith("backbone") else 1e-3
        assert group["lr"] == pytest.approx(expected), group["name"]
    grouped = sum(len(g["params"]) for g in groups)
    assert grouped == len(names)
    with pytest.raises(ConfigError, match="only 2"):
        _build("partial", {"blocks": 5})


def test_norm_trains_only_norm_affine_and_heads() -> None:
    model, _, _ = _build("norm")
    modules = dict(model.named_modules())
    for name in _trainable(model):
        owner = modules[name.rsplit(".", 1)[0]]
        assert name.startswith("heads.") or isinstance(owner, nn.LayerNorm), name


def test_vera_trains_scaling_vectors_and_round_trips(tmp_path: Path) -> None:
    model, preprocess, spec = _build("vera", {"rank": 16})
    names = _trainable(model)
    backbone_names = {n for n in names if not n.startswith("heads.")}
    assert backbone_names and all("vera_lambda" in n for n in backbone_names)
    # d (rank) and b (out features) per targeted layer: 4 layers per block, 2 blocks
    linear = {n: m for n, m in model.backbone.named_modules() if hasattr(m, "vera_lambda_d")}
    expected = sum(16 + m.base_layer.out_features for m in linear.values())
    assert sum(p.numel() for n, p in model.named_parameters() if n in backbone_names) == expected
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "vera_lambda_b" in n:
                p.normal_()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    save_checkpoint(
        model,
        tmp_path / "ck",
        backbone=BACKBONE,
        preprocess=preprocess,
        tasks=DEFAULT_TASKS,
        method=spec,
        heads=HEADS,
    )
    again = load_checkpoint(tmp_path / "ck")
    for key, value in model(x).items():
        torch.testing.assert_close(again(x)[key], value, rtol=0, atol=0)


def test_galore_groups_project_backbone_matrices_only() -> None:
    model, _, spec = _build("galore", {"base": "partial", "blocks": 1, "rank": 4})
    assert spec.config["base"] == "partial" and spec.config["blocks"] == 1
    method = get_method("galore")
    groups = method.param_groups(model, spec.config, 1e-3, 0.01)
    heads = {id(p) for p in model.heads.parameters()}
    for group in groups:
        if group.get("galore"):
            assert all(p.ndim >= 2 and id(p) not in heads for p in group["params"])
    assert isinstance(method.optimizer(groups, spec.config, lr=1e-3), GaLoreAdamW)
    with pytest.raises(ConfigError, match="base must be one of"):
        _build("galore", {"base": "lora"})


def test_galore_keeps_low_rank_moments_and_descends() -> None:
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(32, 16))
    target = torch.randn(32, 16)
    opt = GaLoreAdamW(
        [{"params": [weight], "galore": {"rank": 4, "update_proj_gap": 5, "scale": 1.0}}], lr=0.05
    )
    losses = []
    for _ in range(30):
        loss = ((weight - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    state = opt.state[weight]
    assert state["exp_avg"].shape == (4, 16) or state["exp_avg"].shape == (32, 4)
    assert opt.low_rank_state_numel() < 2 * weight.numel()


@pytest.mark.parametrize(
    ("name", "config", "match"),
    [("lora", {"rank": 0}, "rank must be > 0"), ("vera", {"rnk": 4}, "unknown vera option")],
)
def test_bad_method_options_are_refused(name: str, config: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _build(name, config)


def test_mtlora_has_one_branch_per_task_and_merges(tmp_path: Path) -> None:
    from facesdk.training.mtlora import BranchedBackbone

    backbone = BackboneSpec("vit_pe_core_tiny_patch16_384", "random", {"img_size": 32, "depth": 3})
    torch.manual_seed(0)
    model, preprocess, spec = build_model(
        backbone, DEFAULT_TASKS, HEADS, MethodSpec("mtlora", {"rank": 4, "task_rank": 2})
    )
    assert isinstance(model.backbone, BranchedBackbone)
    assert set(model.backbone.branches) == {"age", "gender", "emotion"}
    trainable = _trainable(model)
    assert any(".trunk." in n and "lora_magnitude_vector" in n for n in trainable)  # DoRA on the trunk
    for task in ("age", "gender", "emotion"):
        assert any(f".branches.{task}." in n and "attn_pool" in n and "lora_A" in n for n in trainable)
    assert not any("magnitude" in n for n in trainable if ".branches." in n)  # plain LoRA on branches
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.1)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert not torch.allclose(
        out["age"],
        build_model(backbone, DEFAULT_TASKS, HEADS, MethodSpec("linear_probe"))[0].eval()(x)["age"],
    )
    save_checkpoint(
        model,
        tmp_path / "ck",
        backbone=backbone,
        preprocess=preprocess,
        tasks=DEFAULT_TASKS,
        method=spec,
        heads=HEADS,
    )
    again = load_checkpoint(tmp_path / "ck")
    for key, value in out.items():
        torch.testing.assert_close(again(x)[key], value, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="below the backbone depth"):
        build_model(backbone, DEFAULT_TASKS, HEADS, MethodSpec("mtlora", {"branch_blocks": 3}))
