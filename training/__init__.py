"""facesdk.training: the multi-task model, adapters, data and the training loop (extra ``[train]``)."""

from __future__ import annotations

from .checkpoint_io import build_model, load_checkpoint, load_checkpoint_with_manifest, save_checkpoint
from .methods import METHODS, AdapterConfig, get_method, register_method
from .model import MultiTaskModel

__all__ = [
    "AdapterConfig",
    "METHODS",
    "MultiTaskModel",
    "build_model",
    "get_method",
    "load_checkpoint",
    "load_checkpoint_with_manifest",
    "register_method",
    "save_checkpoint",
]
