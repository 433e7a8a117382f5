"""Compile an open_clip Perception Encoder into a facesdk checkpoint with zero-shot heads.

The text tower runs once, here: each class's prompt ensemble becomes one normalised text
embedding, and each task's head holds those embeddings times CLIP's logit scale. At run
time only the vision tower runs, so export and the Analyzer treat the result like any
trained checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facesdk.contract.checkpoint import BackboneSpec, CheckpointManifest, HeadSpec, MethodSpec
from facesdk.errors import ConfigError, DependencyError
from facesdk.preprocess import Preprocess

from ..checkpoint_io import build_model, save_checkpoint
from ..hub import hub_fetch
from ..model import MultiTaskModel
from .method import METHOD_NAME
from .prompts import PromptSet, load_prompts

__all__ = [
    "FIDELITY_TOLERANCE",
    "ClipBundle",
    "load_clip",
    "class_embeddings",
    "reference_logits",
    "compile_zeroshot",
    "build_zeroshot_checkpoint",
]

log = logging.getLogger(__name__)

FIDELITY_TOLERANCE = 1e-4
"""Largest absolute logit difference allowed between the compiled model and open_clip."""


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise DependencyError(
            f"zero-shot compilation needs open_clip ({exc}); install it with: pip install 'facesdk[zeroshot]'"
        ) from exc
    return open_clip


@dataclass(frozen=True)
class ClipBundle:
    """An open_clip model with its tokenizer, name, pretrained tag and image preprocessing."""

    model: nn.Module
    tokenizer: Any
    name: str
    pretrained: str | None
    preprocess: Preprocess
    vision_kwargs: Mapping[str, Any] | None = None


def _preprocess(open_clip: Any, name: str, tag: str | None, size: tuple[int, int]) -> Preprocess:
    """Mean, std and interpolation of the pretrained tag (or the model's first tag)."""
    tags = open_clip.list_pretrained_tags_by_model(name)
    cfg = open_clip.get_pretrained_cfg(name, tag or (tags[0] if tags else "")) or {}
    mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in ("bicubic", "bilinear", "nearest", "area"):
        interpolation = "bicubic"
    return Preprocess(input_size=size, mean=mean, std=std, interpolation=interpolation)  # type: ignore[arg-type]


def load_clip(
    name: str,
    pretrained: str | None = None,
    device: str = "cpu",
    vision_kwargs: Mapping[str, Any] | None = None,
) -> ClipBundle:
    """Build an open_clip PE-Core model (random init unless ``pretrained`` names a tag).

    ``device="meta"`` builds only the shapes (no memory, no initialisation): enough to count FLOPs.
    ``vision_kwargs`` (e.g. ``{"img_size": 64, "depth": 4}``) rebuilds the random-init vision
    tower with these extra ``timm.create_model`` arguments: a reduced tower that trains in
    seconds on a CPU, for benchmarks and tests. The checkpoint records them in its backbone's
    ``kwargs``, so ``heads_init: zeroshot`` asks for the same network.

    Raises:
        DependencyError: open_clip is not installed.
        ConfigError: Unknown model or tag; ``vision_kwargs`` with pretrained weights.
    """
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if m.startswith("PE-Core")]
        raise ConfigError(f"unknown open_clip model {name!r}; PE-Core models: {close}")
    if vision_kwargs and pretrained is not None:
        raise ConfigError(
            f"vision_kwargs {dict(vision_kwargs)} change the network, so {name}'s pretrained weights no "
            "longer fit; use them with a random-init model only"
        )
    if pretrained is not None:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ConfigError(f"{name} has no pretrained tag {pretrained!r}; its tags: {tags}")
    guard = (
        hub_fetch(
            f"the pretrained weights of {name} (tag {pretrained!r})",
            "leave out --pretrained for a random-init model",
        )
        if pretrained is not None
        else contextlib.nullcontext()
    )
    with guard, torch.device(device):  # on "meta" the modules are never materialised on the CPU
        model = open_clip.create_model(
            name, pretrained=pretrained, require_pretrained=pretrained is not None, device=device
        )
        if vision_kwargs:
            _rebuild_trunk(open_clip, model, name, dict(vision_kwargs))
    model.eval()
    size = tuple(int(s) for s in model.visual.image_size)
    return ClipBundle(
        model=model,
        tokenizer=open_clip.get_tokenizer(name),
        name=name,
        pretrained=pretrained,
        preprocess=_preprocess(open_clip, name, pretrained, size),  # type: ignore[arg-type]
        vision_kwargs=dict(vision_kwargs) if vision_kwargs else None,
    )


def _rebuild_trunk(open_clip: Any, model: nn.Module, name: str, kwargs: dict[str, Any]) -> None:
    """Replace open_clip's timm vision trunk by the same timm model built with ``kwargs``."""
    import timm

    cfg = open_clip.get_model_config(name)["vision_cfg"]
    old = getattr(model.visual, "trunk", None)
    if not cfg.get("timm_model_name") or not isinstance(getattr(old, "head", None), nn.Linear):
        raise ConfigError(f"{name}: vision_kwargs need a timm vision tower with the projection as its head")
    reserved = {"num_classes", "global_pool", "pretrained"} & set(kwargs)
    if reserved:
        raise ConfigError(f"vision_kwargs may not set {sorted(reserved)}: the CLIP config fixes them")
    trunk = timm.create_model(
        cfg["timm_model_name"],
        pretrained=False,
        num_classes=int(old.head.out_features),
        global_pool=str(cfg.get("timm_pool", "token")),
        **kwargs,
    )
    model.visual.trunk = trunk
    size = trunk.pretrained_cfg.get("input_size", (3, *model.visual.image_size))[-2:]
    if "img_size" in kwargs:
        value = kwargs["img_size"]
        size = (value, value) if isinstance(value, int) else tuple(value)
    model.visual.image_size = tuple(int(v) for v in size)


@torch.no_grad()
def class_embeddings(bundle: ClipBundle, prompts: PromptSet, batch: int = 64) -> dict[str, torch.Tensor]:
    """Per task, a (classes x embed dim) matrix of unit text embeddings (prompt ensembles).

    Each prompt's embedding is normalised, the class mean is taken and normalised again
    (open_clip's ``build_zero_shot_classifier``).
    """
    out = {}
    for task in prompts.tasks:
        rows = []
        for label, _ in task.classes:
            texts = task.prompts(label)
            parts = [
                bundle.model.encode_text(bundle.tokenizer(texts[i : i + batch]), normalize=True)
                for i in range(0, len(texts), batch)
            ]
            rows.append(F.normalize(torch.cat(parts).mean(dim=0), dim=-1))
        out[task.name] = torch.stack(rows)
    return out


@torch.no_grad()
def reference_logits(
    bundle: ClipBundle,
    images: torch.Tensor,
    prompts: PromptSet,
    text: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """open_clip's own zero-shot logits: both towers run, embeddings normalised, times the scale.

    ``text`` reuses class embeddings already computed by :func:`class_embeddings`.
    """
    image = bundle.model.encode_image(images, normalize=True)
    scale = bundle.model.logit_scale.exp()
    bias = getattr(bundle.model, "logit_bias", None)
    out = {}
    for name, text_emb in (text or class_embeddings(bundle, prompts)).items():
        logits = scale * image @ text_emb.T
        out[name] = logits + bias if bias is not None else logits
    return out


def backbone_spec(bundle: ClipBundle) -> BackboneSpec:
    """The timm model that equals open_clip's vision tower, projection included."""
    open_clip = _open_clip()
    visual = bundle.model.visual
    vision_cfg = open_clip.get_model_config(bundle.name)["vision_cfg"]
    timm_name = vision_cfg.get("timm_model_name")
    trunk = getattr(visual, "trunk", None)
    if not timm_name or trunk is None or len(getattr(visual, "head", [None])) != 0:
        raise ConfigError(
            f"{bundle.name}: only CLIP models whose vision tower is a timm model with the projection as "
            "its classifier (open_clip's PE-Core configs) can be compiled"
        )
    if not isinstance(trunk.head, nn.Linear):
        raise ConfigError(
            f"{bundle.name}: the vision trunk's head is {trunk.head!r}, not the linear projection"
        )
    kwargs = {
        "num_classes": int(trunk.head.out_features),
        "global_pool": str(vision_cfg.get("timm_pool", "token")),
        **dict(bundle.vision_kwargs or {}),
    }
    return BackboneSpec(timm_name, "hub" if bundle.pretrained else "random", kwargs)


def _method_config(bundle: ClipBundle, prompts: PromptSet, embed_dim: int) -> dict[str, Any]:
    open_clip = _open_clip()
    return {
        "clip": bundle.name,
        "pretrained": bundle.pretrained,
        "open_clip": open_clip.__version__,
        "embed_dim": embed_dim,
        "logit_scale": float(bundle.model.logit_scale.exp()),
        "prompts": prompts.to_json(),
    }


@torch.no_grad()
def compile_zeroshot(
    bundle: ClipBundle, prompts: PromptSet, text: dict[str, torch.Tensor] | None = None
) -> tuple[MultiTaskModel, dict[str, Any]]:
    """A :class:`MultiTaskModel` whose logits are ``bundle``'s zero-shot logits.

    ``text`` reuses class embeddings already computed by :func:`class_embeddings`.

    Returns:
        The model (eval mode) and the keyword arguments :func:`save_checkpoint` needs
        besides the model (backbone, preprocess, tasks, method, heads).
    """
    backbone = backbone_spec(bundle)
    tasks = prompts.task_specs
    heads = {t.name: HeadSpec("linear") for t in tasks}
    method = MethodSpec(METHOD_NAME, _method_config(bundle, prompts, int(backbone.kwargs["num_classes"])))
    model, _, method = build_model(backbone, tasks, heads, method, load_weights=False)
    model.backbone.load_state_dict(bundle.model.visual.trunk.state_dict(), strict=True)
    scale = bundle.model.logit_scale.exp()
    bias = getattr(bundle.model, "logit_bias", None)
    for name, text_emb in (text or class_embeddings(bundle, prompts)).items():
        linear = model.heads[name][0]
        linear.weight.copy_(scale * text_emb)
        linear.bias.fill_(float(bias) if bias is not None else 0.0)
    model.eval()
    specs = {
        "backbone": backbone,
        "preprocess": bundle.preprocess,
        "tasks": tasks,
        "method": method,
        "heads": heads,
    }
    return model, specs


@torch.no_grad()
def check_fidelity(
    model: MultiTaskModel,
    bundle: ClipBundle,
    prompts: PromptSet,
    text: dict[str, torch.Tensor] | None = None,
    batch: int = 2,
) -> float:
    """Largest absolute difference between the compiled logits and open_clip's, on random images.

    Raises:
        ConfigError: The difference exceeds :data:`FIDELITY_TOLERANCE`.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *bundle.preprocess.input_size, generator=generator)
    ours = model(images)
    ref = reference_logits(bundle, images, prompts, text)
    diff = max(float((ours[k] - ref[k]).abs().max()) for k in ref)
    if diff > FIDELITY_TOLERANCE:
        raise ConfigError(
            f"compiled zero-shot logits differ from open_clip's by {diff:.3g} (> {FIDELITY_TOLERANCE}); "
            "this open_clip/timm pair builds different vision towers: report it with both versions"
        )
    return diff


def build_zeroshot_checkpoint(
    clip: str,
    out: str | os.PathLike[str],
    prompts: str | os.PathLike[str] | PromptSet | None = None,
    pretrained: str | None = None,
    vision_kwargs: Mapping[str, Any] | None = None,
) -> CheckpointManifest:
    """Compile ``clip`` with ``prompts`` and write a checkpoint directory at ``out`` (atomically).

    Args:
        clip: open_clip model name, e.g. ``PE-Core-T-16-384``.
        out: Checkpoint directory to write (replaced whole if it exists).
        prompts: A prompts file, a parsed :class:`PromptSet`, or None for the defaults.
        pretrained: open_clip pretrained tag (e.g. ``meta``); None builds a random-init model.
        vision_kwargs: A reduced random-init vision tower (see :func:`load_clip`).
    """
    prompt_set = prompts if isinstance(prompts, PromptSet) else load_prompts(prompts)
    bundle = load_clip(clip, pretrained, vision_kwargs=vision_kwargs)
    count = sum(len(t.prompts(label)) for t in prompt_set.tasks for label, _ in t.classes)
    log.info("encoding %d prompts for %d task(s) with %s", count, len(prompt_set.tasks), clip)
    text = class_embeddings(bundle, prompt_set)
    model, specs = compile_zeroshot(bundle, prompt_set, text)
    diff = check_fidelity(model, bundle, prompt_set, text)
    log.info("compiled logits match open_clip's within %.2g", diff)
    training: Mapping[str, Any] = {"zeroshot": {"prompts": count, "fidelity_max_abs_diff": diff}}
    return save_checkpoint(model, out, training=training, **specs)
