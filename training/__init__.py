"""facesdk.training: the multi-task model, adapters, data and the training loop (extra ``[train]``).

Importing this package registers every adaptation method (:mod:`.methods`, :mod:`.mtlora`,
:mod:`.zeroshot.method`) with :mod:`.method_registry`.
"""

from __future__ import annotations

from . import mtlora as _mtlora  # noqa: F401  (registers 'mtlora')
from .checkpoint_io import build_model, load_checkpoint, load_checkpoint_with_manifest, save_checkpoint
from .methods import METHODS, AdapterConfig, get_method, register_method
from .model import MultiTaskModel
from .zeroshot import method as _zeroshot_method  # noqa: F401  (registers 'zeroshot')

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
