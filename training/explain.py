"""Where a model looks: attention-pool maps, attention rollout and Grad-CAM on aligned face crops.

``facesdk explain IMAGE [IMAGE ...] --model CKPT [--model CKPT2] --out DIR`` detects every face
with the SDK's detector, cuts it with the SDK's own crop function and the checkpoint's
preprocessing (the pixels the model was trained and is served on), and draws, per face and per
model, a heat map over the crop:

* **attention pool** (Perception Encoder ViTs, whose features come from an attention-pooling
  head with a learned query): the pool's attention over the patch tokens, averaged over its
  heads, one map per query. The tasks share one pool, so one map serves all of them; MTLoRA
  gives every task its own pool, and then every task gets its own map.
* **attention rollout** (other ViTs): the product over blocks of the head-averaged attention
  matrices, each mixed half-and-half with the identity (Abnar and Zuidema, 2020), read from the
  class token (or averaged over tokens when there is none). One map for all tasks.
* **Grad-CAM** (convolutional backbones): the last feature map weighted by the spatially
  averaged gradient of each task's top logit, rectified (Selvaraju et al., 2017). One map per task.

Maps are scaled to [0, 1] per face. The output folder holds one PNG grid per image (a row per
face: the crop, then every model's overlays side by side) and ``explain.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from facesdk.arguments import positive_int
from facesdk.contract.manifest_io import atomic_write_json
from facesdk.errors import ConfigError, FaceSdkError, SourceError
from facesdk.faces import FaceDetector, crop_face
from facesdk.outputs import StagedDir, check_output_dir
from facesdk.preprocess import to_input_tensor

from .backbones import CNN_FAMILIES, family_of
from .checkpoint_io import load_checkpoint_with_manifest

__all__ = [
    "ALL_TASKS",
    "Explanation",
    "attention_pool_maps",
    "attention_rollout_maps",
    "explain_model",
    "gradcam_maps",
    "main",
    "overlay",
]

log = logging.getLogger(__name__)

ALL_TASKS = "all tasks"
"""The ``target`` of a map that every task shares (one attention pool, rollout)."""
MARKER = "explain.json"
TILE = 160


@dataclass(frozen=True)
class Explanation:
    """Heat maps of one batch: ``maps`` is ``(N, h, w)`` float32 in [0, 1] (per-sample scaled).

    Attributes:
        method: ``"attention pool"``, ``"attention rollout"`` or ``"grad-cam"``.
        target: The task the map explains, or :data:`ALL_TASKS`.
        maps: One map per sample over the patch grid or the last feature map.
    """

    method: str
    target: str
    maps: np.ndarray

    @property
    def title(self) -> str:
        return f"{self.method}: {self.target}"


def _unit(maps: torch.Tensor) -> np.ndarray:
    """Scale each map to [0, 1] (a flat map becomes zeros)."""
    flat = maps.detach().float().flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    scaled = (flat - low) / (high - low).clamp_min(1e-12)
    return scaled.reshape(maps.shape).cpu().numpy().astype(np.float32)


def _base(module: nn.Module) -> nn.Module:
    get = getattr(module, "get_base_model", None)
    return get() if callable(get) else module


def _patch_grid(model: nn.Module, batch: torch.Tensor) -> tuple[int, int]:
    """The (rows, cols) of the patch grid for ``batch`` from the first ``patch_embed`` found."""
    for _, module in model.named_modules():
        embed = getattr(module, "patch_embed", None)
        if embed is not None and getattr(embed, "patch_size", None) is not None:
            ph, pw = (int(v) for v in embed.patch_size)
            return batch.shape[-2] // ph, batch.shape[-1] // pw
    raise ConfigError(f"found no patch embedding in {type(model).__name__}; is it a ViT?")


def _pool_target(name: str, tasks: Sequence[str]) -> str:
    for task in tasks:
        if re.search(rf"(^|\.)branches\.{re.escape(task)}\.", name):
            return task
    return ALL_TASKS


def _pools(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ == "AttentionPoolLatent"]


def _pool_attention(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pool's attention ``(N, queries, tokens)``, averaged over heads, from its own weights."""
    b, n, c = x.shape
    if getattr(pool, "pos_embed", None) is not None:
        x = x + pool.pos_embed.unsqueeze(0).to(x.dtype)
    heads, head_dim = pool.num_heads, pool.head_dim
    q = pool.q(pool.latent.expand(b, -1, -1)).reshape(b, pool.latent_len, heads, head_dim).transpose(1, 2)
    k = pool.kv(x).reshape(b, n, 2, heads, head_dim).permute(2, 0, 3, 1, 4)[0]
    q, k = pool.q_norm(q), pool.k_norm(k)
    attn = ((q * pool.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    return attn.mean(dim=1)


def attention_pool_maps(
    model: nn.Module, batch: torch.Tensor, tasks: Sequence[str] = ()
) -> list[Explanation]:
    """Every attention pool's attention over the patches (one :class:`Explanation` per pool and query)."""
    pools = _pools(model)
    if not pools:
        raise ConfigError(f"{type(_base(model)).__name__} has no attention pool; use rollout or Grad-CAM")
    rows, cols = _patch_grid(model, batch)
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        pool.register_forward_pre_hook(lambda _m, args, name=name: captured.__setitem__(name, args[0]))
        for name, pool in pools
    ]
    try:
        with torch.no_grad():
            model(batch)
            out = []
            for name, pool in pools:
                attn = _pool_attention(pool, captured[name])[..., -rows * cols :]
                target = _pool_target(name, tasks)
                for query in range(attn.shape[1]):
                    label = target if attn.shape[1] == 1 else f"{target} (query {query})"
                    out.append(
                        Explanation("attention pool", label, _unit(attn[:, query].reshape(-1, rows, cols)))
                    )
    finally:
        for hook in hooks:
            hook.remove()
    return out


@contextlib.contextmanager
def _unfused(model: nn.Module) -> Iterator[None]:
    """Switch timm's fused attention off so the attention probabilities pass through ``attn_drop``."""
    saved = [(m, m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")]
    for module, _ in saved:
        module.fused_attn = False
    try:
        yield
    finally:
        for module, value in saved:
            module.fused_attn = value


def attention_rollout_maps(model: nn.Module, batch: torch.Tensor) -> list[Explanation]:
    """Attention rollout over every block's self-attention (one map for all tasks)."""
    drops = [m.attn_drop for n, m in model.named_modules() if n.endswith("attn") and hasattr(m, "attn_drop")]
    if not drops:
        raise ConfigError(f"found no self-attention blocks in {type(_base(model)).__name__}")
    rows, cols = _patch_grid(model, batch)
    captured: list[torch.Tensor] = []
    hooks = [d.register_forward_hook(lambda _m, _a, out: captured.append(out)) for d in drops]
    try:
        with torch.no_grad(), _unfused(model):
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    if not captured:
        raise ConfigError("the attention blocks ran fused; cannot read their attention for rollout")
    tokens = captured[0].shape[-1]
    rollout = torch.eye(tokens).expand(batch.shape[0], tokens, tokens)
    for attn in captured:
        mixed = 0.5 * attn.mean(dim=1) + 0.5 * torch.eye(tokens)
        rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout
    prefix = tokens - rows * cols
    source = rollout[:, 0] if prefix > 0 else rollout.mean(dim=1)
    return [Explanation("attention rollout", ALL_TASKS, _unit(source[:, prefix:].reshape(-1, rows, cols)))]


def gradcam_maps(model: nn.Module, batch: torch.Tensor, tasks: Sequence[str]) -> list[Explanation]:
    """Grad-CAM of each task's top class on the backbone's last feature map (one map per task)."""
    base = _base(model.backbone)
    with torch.enable_grad():
        features = base.forward_features(batch)
        if features.ndim != 4:
            raise ConfigError(
                f"Grad-CAM needs a convolutional feature map, got shape {tuple(features.shape)}"
            )
        if not features.requires_grad:  # a frozen backbone (linear probe): the map is a leaf here
            features.requires_grad_(True)
        return _gradcam(model, base, features, tasks)


def _gradcam(
    model: nn.Module, base: nn.Module, features: torch.Tensor, tasks: Sequence[str]
) -> list[Explanation]:
    pooled = base.forward_head(features)
    out = []
    for task in tasks:
        logits = model.heads[task](pooled)
        top = logits.argmax(dim=1)
        (grad,) = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), features, retain_graph=True)
        cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * features).sum(dim=1))
        out.append(Explanation("grad-cam", task, _unit(cam)))
    return out


def explain_model(model: nn.Module, batch: torch.Tensor) -> list[Explanation]:
    """The maps this architecture supports: attention pool, else rollout for ViTs, else Grad-CAM."""
    model.eval()
    tasks = list(getattr(model, "task_names", ()))
    if _pools(model):
        return attention_pool_maps(model, batch, tasks)
    family = family_of(model.backbone)
    if family == "vit":
        return attention_rollout_maps(model, batch)
    if family in CNN_FAMILIES or family == "other":
        return gradcam_maps(model, batch, tasks)
    raise ConfigError(f"no explanation method for backbone family {family!r}")


def overlay(crop_bgr: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (any grid) over a BGR crop, as a JET colour map."""
    h, w = crop_bgr.shape[:2]
    big = cv2.resize(heat.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    colour = cv2.applyColorMap(np.clip(big * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(crop_bgr, 1.0 - alpha, colour, alpha, 0.0)


@dataclass
class _Model:
    label: str
    path: Path
    model: nn.Module
    manifest: object


def _tile(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """A TILE x TILE image under a white band with up to two lines of text."""
    band = np.full((34, TILE, 3), 255, np.uint8)
    for i, text in enumerate(lines[:2]):
        cv2.putText(
            band, text[:26], (4, 14 + 15 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA
        )
    body = cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_CUBIC)
    return np.vstack([band, body])


def _explain_face(frame: np.ndarray, detection: object, entry: _Model) -> tuple[list[np.ndarray], list[dict]]:
    spec = entry.manifest.preprocess  # type: ignore[attr-defined]
    crop = crop_face(frame, detection, spec)  # type: ignore[arg-type]
    batch = torch.from_numpy(to_input_tensor([crop], spec))
    explanations = explain_model(entry.model, batch)
    tiles = [_tile(crop, [entry.label, "aligned crop"])]
    records = []
    for exp in explanations:
        heat = exp.maps[0]
        tiles.append(_tile(overlay(crop, heat), [entry.label, exp.title]))
        peak = np.unravel_index(int(heat.argmax()), heat.shape)
        records.append(
            {
                "method": exp.method,
                "target": exp.target,
                "grid": list(heat.shape),
                "peak": list(map(int, peak)),
            }
        )
    return tiles, records


def _grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    width = max(len(r) for r in rows)
    blank = np.full_like(rows[0][0], 255)
    lines = [np.hstack(r + [blank] * (width - len(r))) for r in rows]
    return np.vstack(lines)


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Where a model looks on each detected face (PNG grids)."
    )
    p.add_argument("images", nargs="+", type=Path, help="image files")
    p.add_argument(
        "--model", action="append", required=True, type=Path, help="checkpoint directory (twice to compare)"
    )
    p.add_argument("--out", required=True, type=Path, help="new output folder (never an input)")
    p.add_argument("--detector", type=Path, default=None, help="YuNet model (default: the documented lookup)")
    p.add_argument(
        "--max-faces", type=positive_int, default=8, help="faces per image at most (largest scores first)"
    )
    p.add_argument("--force", action="store_true", help="replace an earlier 'facesdk explain' output folder")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "facesdk explain") -> int:
    """Explain every face of every image with one or two checkpoints; returns the exit code."""
    args = _parser(prog).parse_args(argv)
    if len(args.model) > 2:
        raise ConfigError(f"--model takes one or two checkpoints (side by side), got {len(args.model)}")
    images = [p.resolve() for p in args.images]
    models = [p.resolve() for p in args.model]
    out = check_output_dir(args.out, [*images, *models, args.detector], force=args.force, manifests=(MARKER,))
    entries = []
    for letter, path in zip("AB", models, strict=False):
        model, manifest = load_checkpoint_with_manifest(path)
        name = path.parent.name if path.name == "checkpoint" else path.name
        entries.append(_Model(f"{letter}: {name} ({manifest.method.name})", path, model, manifest))
    detector = FaceDetector(args.detector)
    staged = StagedDir(out, force=args.force)
    with staged as tmp:  # removed on an error, SIGINT or SIGTERM; a killed run's is cleaned next time
        report = {"models": {e.label: str(e.path) for e in entries}, "images": []}
        for index, image_path in enumerate(images):
            report["images"].append(_explain_image(image_path, index, entries, detector, tmp, args.max_faces))
        atomic_write_json(tmp / MARKER, report)
        staged.commit()
    log.info("wrote explanations of %d image(s) to %s", len(images), out)
    return 0


def _explain_image(
    path: Path, index: int, entries: Sequence[_Model], detector: FaceDetector, out: Path, max_faces: int
) -> dict:
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise SourceError(f"cannot read image {path}; expected a file OpenCV can decode (PNG, JPEG, ...)")
    detections = list(detector.detect(frame))[:max_faces]
    record: dict = {"image": str(path), "faces": []}
    if not detections:
        log.warning("%s: no face found", path)
        return record
    rows = []
    for det in detections:
        row: list[np.ndarray] = []
        maps = {}
        for entry in entries:
            tiles, records = _explain_face(frame, det, entry)
            row += tiles
            maps[entry.label] = records
        rows.append(row)
        record["faces"].append({"box": list(det.box), "score": det.score, "maps": maps})
    name = f"{index:03d}_{path.stem}.png"
    ok, png = cv2.imencode(".png", _grid(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise FaceSdkError(f"could not encode the grid of {path} as PNG")
    (out / name).write_bytes(png.tobytes())
    record["grid"] = name
    return record
