"""Zero-shot heads as the starting point of training (``heads_init: zeroshot``).

A zero-shot checkpoint scores ``s * T @ normalize(P f + b)`` where ``f`` is the pooled
backbone feature, ``P, b`` the CLIP image projection, ``T`` the class text embeddings and
``s`` the logit scale. A trainable linear head on ``f`` cannot normalise, so it starts from
``W = s * T @ P / n`` and ``c = s * T @ b / n``: the same logits up to a positive factor per
image (``|P f + b| / n``), hence the same predicted classes. ``n`` (``feature_norm``) sets
the softmax temperature; ``auto`` takes the mean norm of ``P f + b`` over a few training
crops, so the starting logits have the zero-shot model's scale.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from facesdk.contract.checkpoint import (
    CHECKPOINT_MANIFEST,
    WEIGHTS_FILE,
    BackboneSpec,
    CheckpointManifest,
    HeadSpec,
    load_checkpoint_manifest,
)
from facesdk.errors import ConfigError
from facesdk.tasks import TaskSpec

from .method import METHOD_NAME

__all__ = [
    "HEADS_INITS",
    "check_zeroshot_source",
    "zeroshot_heads_state",
    "init_heads_from_zeroshot",
    "start_from_zeroshot",
]

log = logging.getLogger(__name__)

HEADS_INITS = ("random", "zeroshot")
"""Values of ``model.heads_init``: PyTorch's default initialisation, or compiled text embeddings."""

_PROJECTION = "backbone.head"
_PATCH_EMBED = "backbone.patch_embed.proj.weight"


def _manifest(source: str | os.PathLike[str]) -> CheckpointManifest:
    path = Path(source)
    if not (path / CHECKPOINT_MANIFEST).is_file():
        raise ConfigError(
            f"zero-shot checkpoint {path} has no {CHECKPOINT_MANIFEST}; write one with "
            f"'facesdk zeroshot build --out {path}'"
        )
    manifest = load_checkpoint_manifest(path, verify=False)
    if manifest.method.name != METHOD_NAME:
        raise ConfigError(
            f"{path} was trained with method {manifest.method.name!r}, not a zero-shot checkpoint; "
            "build one with 'facesdk zeroshot build'"
        )
    return manifest


def check_zeroshot_source(
    source: str | os.PathLike[str], backbone: BackboneSpec, tasks: Sequence[TaskSpec], head: HeadSpec
) -> CheckpointManifest:
    """Refuse a zero-shot checkpoint whose vision tower, tasks or heads the training model cannot take.

    Reads only the manifest, so a config is checked before any work.

    Raises:
        ConfigError: Not a zero-shot checkpoint; another timm model or other ``kwargs`` than its
            vision tower; a non-linear head; a task it lacks or whose labels differ.
    """
    manifest = _manifest(source)
    tower = manifest.backbone
    if backbone.name != tower.name:
        raise ConfigError(
            f"model.backbone is {backbone.name!r} but the zero-shot heads in {source} were compiled for the "
            f"vision tower {tower.name!r}; set model.backbone: {tower.name}"
        )
    tower_kwargs = {k: v for k, v in tower.kwargs.items() if k != "num_classes"}
    changed = {k: v for k, v in backbone.kwargs.items() if k != "num_classes" and tower_kwargs.get(k) != v}
    if changed:
        raise ConfigError(
            f"model.kwargs {changed} build another network than the zero-shot vision tower "
            f"({tower.name} with {tower_kwargs}); remove them from model.kwargs"
        )
    if head.kind != "linear":
        raise ConfigError(
            f"heads_init: zeroshot needs linear heads; set model.head.kind: linear (got {head.kind!r})"
        )
    _check_tasks(manifest, source, tasks)
    return manifest


def _check_tasks(
    manifest: CheckpointManifest, source: str | os.PathLike[str], tasks: Sequence[TaskSpec]
) -> None:
    known = {t.name: t for t in manifest.tasks}
    for task in tasks:
        if task.name not in known:
            raise ConfigError(
                f"{source} has no zero-shot head for task {task.name!r} (it has {sorted(known)}); "
                "add the task to the prompts file and rebuild"
            )
        if known[task.name].labels != task.labels:
            raise ConfigError(
                f"task {task.name!r}: the zero-shot head has labels {list(known[task.name].labels)}, "
                f"training uses {list(task.labels)}; rebuild with facesdk's labels"
            )


def _read_tensors(source: str | os.PathLike[str], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Only the named tensors of the checkpoint's weights (a vision tower is large; heads are small)."""
    from safetensors import safe_open

    with safe_open(str(Path(source) / WEIGHTS_FILE), framework="pt") as fh:
        present = set(fh.keys())
        return {name: fh.get_tensor(name) for name in names if name in present}


def zeroshot_heads_state(
    source: str | os.PathLike[str], tasks: Sequence[TaskSpec], feature_norm: float = 1.0
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per task, the ``(weight, bias)`` of a linear head on the backbone's pooled features.

    Args:
        source: A checkpoint directory written by ``facesdk zeroshot build``.
        tasks: The tasks to initialise; each must be in the checkpoint with the same labels.
        feature_norm: Divides weight and bias (see the module docstring); > 0.

    Raises:
        ConfigError: ``source`` is not a zero-shot checkpoint, or lacks a task or its labels differ.
    """
    if not feature_norm > 0:
        raise ConfigError(f"feature_norm must be > 0, got {feature_norm}")
    _check_tasks(_manifest(source), source, tasks)
    names = [f"{_PROJECTION}.weight", f"{_PROJECTION}.bias"]
    names += [f"heads.{t.name}.0.{p}" for t in tasks for p in ("weight", "bias")]
    state = _read_tensors(source, names)
    proj_w, proj_b = state[f"{_PROJECTION}.weight"], state.get(f"{_PROJECTION}.bias")
    out = {}
    for task in tasks:
        text = state[f"heads.{task.name}.0.weight"]  # already times the logit scale
        bias = state[f"heads.{task.name}.0.bias"]
        weight = text @ proj_w / feature_norm
        offset = (text @ proj_b if proj_b is not None else torch.zeros_like(bias)) / feature_norm
        out[task.name] = (weight, offset + bias)
    return out


@torch.no_grad()
def init_heads_from_zeroshot(
    model: nn.Module, source: str | os.PathLike[str], tasks: Sequence[TaskSpec], feature_norm: float = 1.0
) -> list[str]:
    """Copy zero-shot heads into ``model.heads`` (a MultiTaskModel with linear heads); return the tasks.

    Raises:
        ConfigError: A head is not linear, or its width differs from the CLIP projection's input,
            or a task or its labels differ from the zero-shot checkpoint's.
    """
    state = zeroshot_heads_state(source, tasks, feature_norm)
    for name, (weight, bias) in state.items():
        linears = [m for m in model.heads[name].modules() if isinstance(m, nn.Linear)]
        if len(linears) != 1:
            raise ConfigError(
                f"heads_init: zeroshot needs linear heads; head {name!r} has {len(linears)} layers"
            )
        linear = linears[0]
        if tuple(linear.weight.shape) != tuple(weight.shape):
            raise ConfigError(
                f"head {name!r} is {tuple(linear.weight.shape)}, the zero-shot head is {tuple(weight.shape)}: "
                "train the same backbone as the zero-shot checkpoint's vision tower"
            )
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    log.info("heads %s initialised from zero-shot checkpoint %s", sorted(state), source)
    return sorted(state)


def _base_model(backbone: nn.Module) -> nn.Module:
    get_base = getattr(backbone, "get_base_model", None)
    return get_base() if callable(get_base) else backbone


def _mean_projected_norm(model: nn.Module, images: torch.Tensor, proj: Mapping[str, torch.Tensor]) -> float:
    """Mean norm of ``P f + b`` over ``images`` (the CLIP image embedding before normalisation)."""
    was_training = model.training
    model.eval()
    try:
        features = model.forward_features(images)
    finally:
        model.train(was_training)
    paths = list(features.values()) if isinstance(features, dict) else [features]
    weight = proj[f"{_PROJECTION}.weight"].to(images.device)
    bias = proj.get(f"{_PROJECTION}.bias")
    norms = [
        (f.float() @ weight.T + (bias.to(images.device) if bias is not None else 0.0)).norm(dim=-1)
        for f in paths
    ]
    return float(torch.cat(norms).mean())


@torch.no_grad()
def start_from_zeroshot(
    model: nn.Module,
    source: str | os.PathLike[str],
    tasks: Sequence[TaskSpec],
    feature_norm: float | str = "auto",
    images: torch.Tensor | None = None,
) -> float:
    """``heads_init: zeroshot`` for a model about to train: copy the compiled heads; return the norm used.

    Args:
        model: A freshly built MultiTaskModel (adapters applied, not yet wrapped for DDP).
        source: The zero-shot checkpoint directory.
        tasks: The training tasks.
        feature_norm: A number > 0, or ``"auto"``: the mean norm of ``P f + b`` on ``images``.
        images: A few preprocessed training crops (on the model's device); needed for ``auto``.

    Raises:
        ConfigError: The backbone pools differently from the vision tower, or see
            :func:`init_heads_from_zeroshot`.
    """
    manifest = _manifest(source)
    pool = manifest.backbone.kwargs.get("global_pool")
    ours = getattr(_base_model(model.backbone), "global_pool", pool)
    if pool is not None and ours != pool:
        raise ConfigError(
            f"the backbone pools with {ours!r}, the zero-shot vision tower with {pool!r}; "
            f"set model.kwargs.global_pool: {pool}"
        )
    proj = _read_tensors(source, [f"{_PROJECTION}.weight", f"{_PROJECTION}.bias", _PATCH_EMBED])
    embed = next((p for n, p in model.named_parameters() if n.endswith("patch_embed.proj.weight")), None)
    if embed is not None and _PATCH_EMBED in proj and not torch.equal(embed.cpu(), proj[_PATCH_EMBED]):
        log.warning(
            "the backbone starts from other weights than the vision tower of %s (built from %s weights): "
            "its zero-shot heads were compiled for another image embedding",
            source,
            manifest.backbone.weights,
        )
    how = "given"
    if feature_norm == "auto":
        if images is None or not len(images):
            raise ConfigError("zeroshot_feature_norm: auto needs training images; give a number instead")
        feature_norm, how = _mean_projected_norm(model, images, proj), f"mean over {len(images)} crops"
    init_heads_from_zeroshot(model, source, tasks, float(feature_norm))
    log.debug("zero-shot heads divided by the feature norm %.4g (%s)", float(feature_norm), how)
    return float(feature_norm)
