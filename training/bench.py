"""The bench's torch rows and zero-shot figures, registered with ``facesdk bench`` by name.

``facesdk.bench`` (the runtime) never imports torch or a stage; ``pyproject.toml`` registers
this module's :data:`torch_rows` and :func:`zeroshot_complexity` under the entry-point group
``facesdk.bench``, and the bench loads them when ``--ckpt`` or ``--zeroshot-clip`` asks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facesdk.errors import DependencyError

__all__ = ["TORCH_MODES", "TorchRows", "torch_rows", "zeroshot_complexity"]

TORCH_MODES = ("plain", "unmerged", "merged")
"""plain: the backbone without adapters; unmerged: the checkpoint as trained; merged: adapters folded in."""


@dataclass(frozen=True)
class TorchRows:
    """Rows and their runner for the bench's worker processes."""

    modes: tuple[str, ...] = TORCH_MODES

    def rows(self, base: dict[str, Any], ckpt: str) -> list[dict[str, Any]]:
        """One row per mode at ``base``'s batch and threads."""
        return [
            {**base, "runtime": "torch", "mode": m, "ckpt": ckpt, "label": f"torch {m}"} for m in self.modes
        ]

    def runner(self, row: dict[str, Any]) -> Callable[[], Any]:
        """A call of the row's torch model on a random batch (run inside the worker)."""
        import torch

        from facesdk.contract.checkpoint import MethodSpec

        from .checkpoint_io import build_model, load_checkpoint_with_manifest
        from .merging import merge_adapters

        torch.set_num_threads(row["threads"])
        model, manifest = load_checkpoint_with_manifest(row["ckpt"])
        if row["mode"] == "plain":
            model, _, _ = build_model(
                manifest.backbone,
                manifest.tasks,
                manifest.heads,
                MethodSpec("linear_probe"),
                load_weights=False,
            )
        elif row["mode"] == "merged":
            model = merge_adapters(model)
        model.eval()
        h, w = manifest.preprocess.input_size
        x = torch.randn(row["batch"], 3, h, w)

        def call() -> None:
            with torch.inference_mode():
                model(x)

        return call


torch_rows = TorchRows()


def zeroshot_complexity(clip: str, prompts: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Parameters and GFLOPs per image of zero-shot ``clip`` (random init): text encoder at
    inference vs compiled into heads. Needs the ``[zeroshot]`` extra (torch, open_clip)."""
    try:
        from .zeroshot.complexity import measure
        from .zeroshot.prompts import load_prompts
    except ImportError as exc:
        raise DependencyError(
            f"--zeroshot-clip needs the [zeroshot] extra ({exc}); pip install 'facesdk[zeroshot]'"
        ) from exc
    return measure(clip, load_prompts(prompts))
