"""Inference backends behind one protocol: ONNX Runtime, OpenVINO, TensorRT, PyTorch.

Only :mod:`.base` is imported here; each backend module is imported when it is created.
"""

from __future__ import annotations

from .base import BACKENDS, Backend, check_io, create_backend, register_backend, run_batched

__all__ = ["BACKENDS", "Backend", "check_io", "create_backend", "register_backend", "run_batched"]
