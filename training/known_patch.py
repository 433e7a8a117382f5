"""A synthetic task whose label is decided by one patch at a known place, to check explanations.

Each image is a grid of coloured cells with pixel noise. The cell at :data:`KEY` is red or blue
and its colour is the label; every other cell is green, yellow or grey, so nothing else carries
the label. A model that learns the task has to use that cell, and a map that says where the
model looks should peak there. The tests train tiny models on it in seconds
(``tests/training/test_explain.py``); ``python -m facesdk.training.known_patch --out FILE.png``
draws the figure of ``docs/explain.md``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from facesdk.arguments import positive_int
from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
from facesdk.contract.manifest_io import atomic_write_bytes
from facesdk.errors import ConfigError
from facesdk.preprocess import Preprocess
from facesdk.tasks import TaskSpec

from .checkpoint_io import build_model
from .explain import explain_model, overlay

__all__ = [
    "BACKBONES",
    "KEY",
    "TASK",
    "KnownPatchRun",
    "known_patch_set",
    "main",
    "peak_cell",
    "to_batch",
    "train_known_patch",
]

log = logging.getLogger(__name__)

TASK = TaskSpec("patch", ("blue", "red"))
KEY = (1, 2)
"""(row, column) of the cell whose colour decides the label."""
PALETTE = np.array([[255, 0, 0], [0, 0, 255], [0, 200, 0], [230, 230, 0], [128, 128, 128]], np.float32)
"""RGB: red and blue (the key cell only), then green, yellow and grey (every other cell)."""

BACKBONES: dict[str, tuple[BackboneSpec, int, int]] = {
    # a Perception Encoder ViT (attention-pool head): 4 x 4 patches of 8 px
    "pe": (
        BackboneSpec(
            "vit_pe_core_tiny_patch16_384",
            "random",
            {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3},
        ),
        4,
        150,
    ),
    # a plain ViT with a class token and no attention pool: attention rollout
    "vit": (
        BackboneSpec(
            "vit_tiny_patch16_224",
            "random",
            {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3},
        ),
        4,
        150,
    ),
    # a narrow ResNet at 96 px, output stride 16 (last stage dilated): a 6 x 6 feature map for
    # Grad-CAM, two map cells per known-patch cell
    "cnn": (
        BackboneSpec(
            "resnet18",
            "random",
            {
                "layers": [1, 1, 1, 1],
                "channels": [16, 32, 64, 128],
                "stem_width": 16,
                "output_stride": 16,
                "pretrained_cfg_overlay": {"input_size": [3, 96, 96]},
            },
        ),
        3,
        40,
    ),
}
"""Tiny backbones by name: (spec, cells per side, training steps)."""


def peak_cell(heat: np.ndarray, size: int, grid: int) -> tuple[int, int]:
    """The (row, column) of the known-patch cell holding a map's maximum, found in image space.

    The map is resized onto the ``size x size`` image (as the overlays are drawn), so maps of any
    resolution (a 4 x 4 patch grid, a 6 x 6 feature map) are judged on the same cells.
    """
    big = cv2.resize(heat.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    row, col = np.unravel_index(int(big.argmax()), big.shape)
    cell = size // grid
    return int(row) // cell, int(col) // cell


def known_patch_set(count: int, size: int, grid: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` RGB uint8 images ``(N, size, size, 3)`` of ``grid x grid`` cells and their labels."""
    if size % grid:
        raise ConfigError(f"image size {size} must be a multiple of the grid {grid}")
    rng = np.random.default_rng(seed)
    cell = size // grid
    colours = rng.integers(2, len(PALETTE), (count, grid, grid))
    labels = rng.integers(0, 2, count)
    colours[:, KEY[0], KEY[1]] = 1 - labels  # label 1 ("red") -> palette 0 (red)
    pixels = PALETTE[colours].repeat(cell, 1).repeat(cell, 2)
    noisy = pixels + rng.normal(0, 20, pixels.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), labels


def to_batch(images: np.ndarray, spec: Preprocess) -> torch.Tensor:
    """RGB uint8 images -> the model's normalised N x 3 x H x W float batch."""
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    batch = (images.astype(np.float32) / 255.0 - mean) / std
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


@dataclass(frozen=True)
class KnownPatchRun:
    """A model trained on the known-patch task, with what it needs to draw its inputs."""

    name: str
    model: nn.Module
    preprocess: Preprocess
    method: MethodSpec
    grid: int

    @property
    def size(self) -> int:
        return self.preprocess.input_size[0]


def train_known_patch(name: str, seed: int = 0, steps: int | None = None) -> KnownPatchRun:
    """Train backbone ``name`` of :data:`BACKBONES` (full fine-tuning, AdamW, batch 32) on the task."""
    spec, grid, default_steps = BACKBONES[name]
    torch.manual_seed(seed)
    model, preprocess, method = build_model(spec, (TASK,), {TASK.name: HeadSpec()}, MethodSpec("full", {}))
    images, labels = known_patch_set(2048, preprocess.input_size[0], grid, seed)
    batch, target = to_batch(images, preprocess), torch.from_numpy(labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps or default_steps):
        pick = torch.randint(0, len(batch), (32,))
        loss = nn.functional.cross_entropy(model(batch[pick])[TASK.name], target[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return KnownPatchRun(name, model, preprocess, method, grid)


def _figure(runs: Sequence[KnownPatchRun], samples: int, tile: int = 128) -> np.ndarray:
    """One row per run: ``samples`` held-out images, each beside its map overlay (BGR)."""
    rows = []
    for run in runs:
        images, _ = known_patch_set(samples, run.size, run.grid, seed=1)
        (explanation,) = explain_model(run.model, to_batch(images, run.preprocess))
        tiles = []
        for image, heat in zip(images, explanation.maps, strict=True):
            bgr = cv2.resize(
                cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (tile, tile), interpolation=cv2.INTER_NEAREST
            )
            tiles += [bgr, overlay(bgr, heat, alpha=0.6)]
        band = np.full((22, tile * len(tiles), 3), 255, np.uint8)
        text = f"{run.name}: {explanation.method} (key cell: row {KEY[0]}, column {KEY[1]}, from 0)"
        cv2.putText(band, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.vstack([band, np.hstack(tiles)]))
    return np.vstack(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Train the three tiny models and write the known-patch figure (PNG) to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m facesdk.training.known_patch", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--samples", type=positive_int, default=3, help="held-out images per model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)  # tiny models: one thread is several times faster than two busy ones
    runs = [train_known_patch(name) for name in BACKBONES]
    ok, png = cv2.imencode(".png", _figure(runs, args.samples), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    atomic_write_bytes(args.out, png.tobytes())
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    from facesdk.errors import run_guarded

    raise SystemExit(run_guarded("python -m facesdk.training.known_patch", main))
