"""Parameters and FLOPs of zero-shot inference: text tower per image vs compiled heads.

The reference runs both towers for every image (the image and every prompt of every
class). The compiled model runs the vision tower and the linear heads only. FLOPs come
from ``torch.utils.flop_counter.FlopCounterMode`` with fused attention off: timm's
attention switched to its explicit form, and ``scaled_dot_product_attention`` (used by
open_clip's text tower through ``nn.MultiheadAttention``) replaced by its math form while
counting, since the counter sees no FLOPs inside the fused CPU kernel. Every count includes
the attention matmuls (``Q K^T`` and ``A V``).

Both models are built on PyTorch's ``meta`` device: FLOPs depend on shapes only, so no weight
is allocated or initialised and nothing is computed; even the largest PE-Core counts in seconds.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .prompts import PromptSet

__all__ = ["count_flops", "measure"]


def _math_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    **_: Any,
) -> torch.Tensor:
    scores = query @ key.transpose(-2, -1) * (scale or 1.0 / math.sqrt(query.shape[-1]))
    if is_causal:
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        scores = (
            scores.masked_fill(~attn_mask, float("-inf"))
            if attn_mask.dtype == torch.bool
            else scores + attn_mask
        )
    return scores.softmax(dim=-1) @ value


@contextlib.contextmanager
def _unfused(model: nn.Module) -> Iterator[None]:
    fused = [m for m in model.modules() if getattr(m, "fused_attn", None) is True]
    original = F.scaled_dot_product_attention
    for module in fused:
        module.fused_attn = False
    F.scaled_dot_product_attention = _math_sdpa  # type: ignore[assignment]
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original  # type: ignore[assignment]
        for module in fused:
            module.fused_attn = True


def count_flops(model: nn.Module, fn: Any) -> int:
    """FLOPs of ``fn()`` (which runs ``model``), fused attention off.

    Grad mode stays on (parameters frozen are fine): ``nn.MultiheadAttention`` would
    otherwise take its fused fast path, which the counter cannot see into.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with _unfused(model), counter, torch.enable_grad():
        fn()
    return int(counter.get_total_flops())


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def _compiled_model(bundle: Any, prompts: PromptSet) -> nn.Module:
    """The compiled checkpoint's module tree on the meta device (shapes only, no text tower run)."""
    from facesdk.contract.checkpoint import HeadSpec, MethodSpec

    from ..checkpoint_io import build_model
    from .compile import backbone_spec
    from .method import METHOD_NAME

    backbone = backbone_spec(bundle)
    config = {
        "clip": bundle.name,
        "embed_dim": backbone.kwargs["num_classes"],
        "logit_scale": 1.0,  # a placeholder: the meta model holds no values
        "prompts": prompts.to_json(),
    }
    heads = {t.name: HeadSpec("linear") for t in prompts.task_specs}
    with torch.device("meta"):
        model, _, _ = build_model(
            backbone, prompts.task_specs, heads, MethodSpec(METHOD_NAME, config), load_weights=False
        )
    return model.eval()


def measure(clip: str, prompts: PromptSet) -> dict[str, Any]:
    """Parameters and GFLOPs per image of both ways to run zero-shot ``clip`` on ``prompts``."""
    from .compile import load_clip

    bundle = load_clip(clip, device="meta")
    texts = [p for t in prompts.tasks for label, _ in t.classes for p in t.prompts(label)]
    image = torch.zeros(1, 3, *bundle.preprocess.input_size, device="meta")
    tokens = bundle.tokenizer(texts).to("meta")
    clip_model = bundle.model.eval()
    for param in clip_model.parameters():
        param.requires_grad_(False)

    def reference() -> None:
        clip_model.encode_image(image, normalize=True)
        clip_model.encode_text(tokens, normalize=True)

    vision_flops = count_flops(clip_model, lambda: clip_model.encode_image(image, normalize=True))
    reference_flops = count_flops(clip_model, reference)
    compiled = _compiled_model(bundle, prompts)
    compiled_flops = count_flops(compiled, lambda: compiled(image))
    return {
        "clip": clip,
        "input_size": list(bundle.preprocess.input_size),
        "prompts": len(texts),
        "tasks": {t.name: len(t.classes) for t in prompts.tasks},
        "reference": {
            "params": _params(clip_model),
            "vision_params": _params(clip_model.visual),
            "gflops": reference_flops / 1e9,
            "vision_gflops": vision_flops / 1e9,
            "text_gflops": (reference_flops - vision_flops) / 1e9,
        },
        "compiled": {"params": _params(compiled), "gflops": compiled_flops / 1e9},
    }
