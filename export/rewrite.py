"""Exact graph rewrites applied to the merged model before ONNX export.

One rewrite lives here today: the **half-rotation RoPE layout** for timm's Eva family (the
Perception Encoder backbones). timm applies rotary embeddings in one of two layouts:

* ``interleaved`` (PE's default): channel pairs ``(2i, 2i+1)`` of each head rotate together,
  ``rot(x) = [-x1, x0, -x3, x2, ...]``. Exported, that is strided ``Slice`` + ``Concat`` work
  that OpenVINO runs in reference kernels (46% of its BF16 time at batch 8, see
  ``docs/openvino.md``).
* ``half`` (``rope_rotate_half=True``): channel ``i`` rotates with ``i + D/2``,
  ``rotate_half(x) = [-x[D/2:], x[:D/2]]``: two contiguous halves, which OpenVINO fuses into one
  ``RoPE`` node.

The two compute the same function once each head's q and k channels are permuted with
``P = [0, 2, 4, ..., 1, 3, 5, ...]`` (even channels first, then odd) and the sin/cos table gets
the same permutation: ``rotate_half(x[P]) == rot(x)[P]``, and ``q[P] . k[P] == q . k``, so the
attention scores, hence everything downstream, are unchanged. The rewrite permutes the output
rows of the q and k projections (weights and biases, and q/k norm parameters where present),
switches the attention modules and the rotary module to the half layout and permutes the cached
sin/cos table. It is exact up to float rounding; :func:`rewrite_for_export` checks it against the
original model (``REWRITE_TOLERANCE``) and refuses it otherwise.

Models without such a backbone (the CNN families, ViTs without RoPE, mixed-RoPE Evas, which timm
only builds interleaved) come back untouched and the record says so.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from facesdk.errors import ConfigError

from .errors import ParityError

__all__ = [
    "ROPE_LAYOUTS",
    "REWRITE_TOLERANCE",
    "RewriteReport",
    "half_rotation_permutation",
    "rope_to_half_rotation",
    "resolve_rope_layout",
    "rewrite_for_export",
]

log = logging.getLogger(__name__)

ROPE_LAYOUTS = ("interleaved", "half")
"""``interleaved``: the graph as timm builds PE. ``half``: the half-rotation rewrite (CPU default)."""

REWRITE_TOLERANCE = 1e-4
"""Largest absolute logit difference allowed between the rewritten and the original model (fp32)."""


@dataclass(frozen=True, slots=True)
class RewriteReport:
    """What :func:`rewrite_for_export` did.

    Attributes:
        rope_layout: The layout of the exported graph (``"interleaved"`` or ``"half"``); for a model
            without RoPE this is ``"interleaved"`` and ``applied`` is 0 (nothing to rewrite).
        applied: Attention modules rewritten.
        max_abs_diff: Largest logit difference rewritten vs original on the check inputs (0 when
            nothing was rewritten).
        tolerance: The tolerance it was held to.
    """

    rope_layout: str
    applied: int
    max_abs_diff: float = 0.0
    tolerance: float = REWRITE_TOLERANCE

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def half_rotation_permutation(head_dim: int) -> torch.Tensor:
    """``[0, 2, 4, ..., 1, 3, 5, ...]``: interleaved channel order -> half-rotation order."""
    if head_dim % 2:
        raise ConfigError(f"RoPE needs an even head dimension, got {head_dim}")
    idx = torch.arange(head_dim)
    return torch.cat([idx[0::2], idx[1::2]])


def _rope_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own a timm rotary embedding used by their blocks (timm's Eva)."""
    from timm.layers.pos_embed_sincos import RotaryEmbeddingCat

    found = []
    for name, module in model.named_modules():
        rope = getattr(module, "rope", None)
        if isinstance(rope, RotaryEmbeddingCat) and hasattr(module, "blocks"):
            found.append((name, module))
    return found


def _permute_rows(tensor: torch.Tensor, groups: int, perm: torch.Tensor) -> torch.Tensor:
    """Permute the last axis of each of ``groups`` consecutive row blocks of ``tensor`` (dim 0)."""
    rows = tensor.shape[0]
    head_dim = perm.numel()
    if rows != groups * head_dim:
        raise ConfigError(f"cannot split {rows} rows into {groups} heads of {head_dim}")
    shaped = tensor.reshape(groups, head_dim, *tensor.shape[1:])
    return shaped[:, perm].reshape(tensor.shape)


@torch.no_grad()
def _rewrite_attention(attn: nn.Module, perm: torch.Tensor) -> None:
    """Permute q and k output channels per head of one timm attention module; switch it to half."""
    heads = int(attn.num_heads)
    kv_heads = int(getattr(attn, "num_kv_heads", heads))
    head_dim = perm.numel()
    qkv = getattr(attn, "qkv", None)
    if qkv is not None:
        if type(qkv) is not nn.Linear:
            raise ConfigError(
                f"attention qkv is a {type(qkv).__name__}, not a plain Linear: merge adapters before rewriting"
            )
        q_rows = heads * head_dim
        for start in (0, q_rows):  # q block, then k block; v is left alone
            block = slice(start, start + q_rows)
            qkv.weight[block] = _permute_rows(qkv.weight[block], heads, perm)
            if qkv.bias is not None:
                qkv.bias[block] = _permute_rows(qkv.bias[block], heads, perm)
        for bias_name in ("q_bias", "k_bias"):  # EvaAttention keeps separate q/k biases
            bias = getattr(attn, bias_name, None)
            if isinstance(bias, torch.Tensor):
                bias.copy_(_permute_rows(bias, heads, perm))
    else:
        for proj_name, groups in (("q_proj", heads), ("k_proj", kv_heads)):
            proj = getattr(attn, proj_name)
            if type(proj) is not nn.Linear:
                raise ConfigError(f"attention {proj_name} is a {type(proj).__name__}; merge adapters first")
            proj.weight.copy_(_permute_rows(proj.weight, groups, perm))
            if proj.bias is not None:
                proj.bias.copy_(_permute_rows(proj.bias, groups, perm))
    for norm_name in ("q_norm", "k_norm"):  # per-head norms over head_dim: permute their affine params
        norm = getattr(attn, norm_name, None)
        for param in (getattr(norm, "weight", None), getattr(norm, "bias", None)):
            if isinstance(param, torch.Tensor) and param.numel() == head_dim:
                param.copy_(param[perm])
    attn.rotate_half = True


@torch.no_grad()
def rope_to_half_rotation(model: nn.Module) -> int:
    """Rewrite every interleaved-RoPE Eva backbone inside ``model`` into the half layout, in place.

    Returns:
        The number of attention modules rewritten (0 when the model has no such backbone, or its
        RoPE is already half-rotation or of a kind this rewrite does not cover).

    Raises:
        ConfigError: A projection is still wrapped by an adapter (merge first).
    """
    count = 0
    owners = _rope_modules(model)
    for name, eva in owners:
        rope = eva.rope
        if rope.rotate_half or getattr(eva, "rope_mixed", False):
            log.info("%s: RoPE already half-rotation or mixed; left as it is", name or "model")
            continue
        # With one RoPE in the model, blocks outside the backbone are fed its table too (MTLoRA's
        # per-task branches hold copies of the last blocks): their q/k must be permuted alike.
        blocks = eva.blocks if len(owners) > 1 else [m for m in model.modules() if hasattr(m, "attn")]
        attns = [blk.attn for blk in blocks if hasattr(getattr(blk, "attn", None), "rotate_half")]
        if not attns:
            continue
        head_dim = int(attns[0].head_dim)
        if int(rope.dim) != head_dim:
            log.info("%s: RoPE covers %d of %d head channels; left as it is", name, rope.dim, head_dim)
            continue
        perm = half_rotation_permutation(head_dim)
        for attn in attns:
            _rewrite_attention(attn, perm)
            count += 1
        rope.rotate_half = True
        table = getattr(rope, "pos_embed", None)
        if isinstance(table, torch.Tensor):  # (N, 2 * dim): sin then cos, each interleaved
            sin, cos = table.chunk(2, -1)
            table.copy_(torch.cat([sin[:, perm], cos[:, perm]], -1))
    return count


def resolve_rope_layout(layout: str, engines: Sequence[str]) -> str:
    """``auto`` -> ``half`` for CPU-only exports, ``interleaved`` when TensorRT engines are built.

    TensorRT keeps the interleaved graph until a GPU shows the half one parses and matches.
    """
    if layout == "auto":
        return "interleaved" if engines else "half"
    if layout not in ROPE_LAYOUTS:
        raise ConfigError(f"--rope-layout must be one of {(*ROPE_LAYOUTS, 'auto')}, got {layout!r}")
    return layout


def _max_diff(a: nn.Module, b: nn.Module, inputs: torch.Tensor) -> float:
    with torch.inference_mode():
        ya, yb = a(inputs), b(inputs)
    if isinstance(ya, torch.Tensor):
        ya, yb = {"out": ya}, {"out": yb}
    return max(float((ya[k] - yb[k]).abs().max()) for k in ya)


def rewrite_for_export(
    model: nn.Module,
    layout: str,
    input_size: tuple[int, int],
    *,
    batch: int = 2,
    tolerance: float = REWRITE_TOLERANCE,
    seed: int = 0,
) -> tuple[nn.Module, RewriteReport]:
    """Return a rewritten copy of ``model`` (the input is untouched) and what was done.

    Args:
        model: The merged fp32 model (eval mode).
        layout: ``"interleaved"`` (no rewrite) or ``"half"``.
        input_size: ``(height, width)`` of the check inputs.
        batch: Random inputs of the parity check.
        tolerance: Largest allowed logit difference rewritten vs original.
        seed: Seed of the check inputs.

    Raises:
        ParityError: The rewritten model differs from the original by more than ``tolerance``.
    """
    layout = resolve_rope_layout(layout, ())
    if layout == "interleaved":
        return model, RewriteReport("interleaved", 0)
    rewritten = copy.deepcopy(model).eval()
    applied = rope_to_half_rotation(rewritten)
    if applied == 0:
        log.info("no interleaved RoPE in this model: graph exported as it is")
        return model, RewriteReport("interleaved", 0)
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, 3, *input_size, generator=gen)
    diff = _max_diff(model.eval(), rewritten, inputs)
    if diff > tolerance:
        raise ParityError(
            f"the half-rotation RoPE rewrite changed the logits by {diff:.3g} (> {tolerance:g}); export "
            "with --rope-layout interleaved and report the backbone and timm version"
        )
    log.info(
        "RoPE rewritten to half rotation in %d attention module(s); max |logit diff| %.3g", applied, diff
    )
    return rewritten, RewriteReport("half", applied, diff, tolerance)
