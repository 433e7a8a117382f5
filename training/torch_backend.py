"""PyTorch backend: runs a training checkpoint directory (``[train]`` extra).

Useful for parity checks against the exported models and for running a model before export.
The training stage owns it and registers it with the runtime by name (entry point
``facesdk.backends: torch`` in ``pyproject.toml``), so ``facesdk.backends`` never imports torch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from facesdk.backends.base import ClosingBackend
from facesdk.contract.export_manifest import ExportManifest
from facesdk.errors import BackendError, require

__all__ = ["TorchBackend"]

logger = logging.getLogger(__name__)


class TorchBackend(ClosingBackend):
    """Runs ``facesdk.training.load_checkpoint(path)`` on CPU (or ``device``).

    Args:
        manifest: Manifest describing tasks and max batch (from the export made of this
            checkpoint, or built from the checkpoint manifest).
        path: The checkpoint directory.
        merged: Merge adapters first with :func:`facesdk.training.merging.merge_adapters`.
        device: torch device string.
    """

    name = "torch"

    def __init__(
        self,
        manifest: ExportManifest,
        path: str | os.PathLike[str],
        merged: bool = False,
        device: str = "cpu",
    ) -> None:
        self._torch = require("torch", "train", "the torch backend")
        from .checkpoint_io import load_checkpoint

        self.manifest, self.path, self.device = manifest, Path(path), device
        model = load_checkpoint(self.path)
        if merged:
            from .merging import merge_adapters

            model = merge_adapters(model)
        self._model = model.to(device).eval()
        self.max_batch = manifest.max_batch

    def describe(self) -> str:
        return f"torch {self._torch.__version__} on {self.device} ({self.path})"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._model is None:
            raise BackendError("this backend was closed")
        torch = self._torch
        with torch.inference_mode():
            out = self._model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device))
        missing = [o.name for o in self.manifest.outputs if o.name not in out]
        if missing:
            raise BackendError(f"checkpoint {self.path} returned {sorted(out)}; missing tasks {missing}")
        return {o.name: out[o.name].float().cpu().numpy() for o in self.manifest.outputs}

    def close(self) -> None:
        self._model = None
