"""Trainable parameter counts, LoRA+ groups through the schedule, checkpoint round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
from facesdk.tasks import DEFAULT_TASKS
from facesdk.training import build_model, load_checkpoint, save_checkpoint
from facesdk.training.methods import DEFAULT_TARGET, get_method
from facesdk.training.trainer import cosine_schedule

HEADS = {t.name: HeadSpec() for t in DEFAULT_TASKS}


TINY = BackboneSpec(
    "vit_pe_core_tiny_patch16_384",
    "random",
    {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 64, "num_heads": 2},
)


def _model(method: str, **options: object):  # noqa: ANN202
    torch.manual_seed(0)
    return build_model(TINY, DEFAULT_TASKS, HEADS, MethodSpec(method, dict(options)))


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_only_adapters_and_heads_train_with_the_formula_count(method: str) -> None:
    rank = 4
    model, _, _ = _model(method, rank=rank)
    raw, _, _ = _model("linear_probe")
    pattern = re.compile(DEFAULT_TARGET)
    expected = sum(p.numel() for p in raw.heads.parameters())
    for name, module in raw.backbone.named_modules():
        if isinstance(module, nn.Linear) and pattern.fullmatch(name):
            expected += rank * (module.in_features + module.out_features)
            expected += module.out_features if method == "dora" else 0
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == expected
    assert all(".lora_" in n or n.startswith("heads.") for n in trainable)


def test_lora_plus_ratio_survives_the_schedule() -> None:
    model, _, spec = _model("lora", rank=2, lora_plus_ratio=6)
    impl = get_method("lora")
    groups = impl.param_groups(model, spec.config, 1e-3, 0.05)
    opt = impl.optimizer(groups, spec.config, lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_schedule(10, 3, 0.0))
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["lora_B"]["lr"] == pytest.approx(6 * by_name["decay"]["lr"])
    b_ids = {id(p) for g in opt.param_groups if g["name"] == "lora_B" for p in g["params"]}
    assert b_ids == {id(p) for n, p in model.named_parameters() if ".lora_B." in n}
    for _ in range(5):
        opt.step()
        sched.step()
        assert by_name["lora_B"]["lr"] == pytest.approx(6 * by_name["decay"]["lr"])
        assert by_name["decay"]["lr"] == pytest.approx(by_name["no_decay"]["lr"])


@pytest.mark.parametrize("method", ["lora", "dora", "full"])
def test_checkpoint_round_trip(method: str, tmp_path: Path) -> None:
    model, pre, spec = _model(method, **({"rank": 2} if method != "full" else {}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.eval()
    save_checkpoint(
        model, tmp_path / "c", backbone=TINY, preprocess=pre, tasks=DEFAULT_TASKS, method=spec, heads=HEADS
    )
    loaded = load_checkpoint(tmp_path / "c")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
