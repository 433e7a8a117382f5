"""The torch backend is training's, and the runtime finds it by name (entry point ``facesdk.backends``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import facesdk.training.checkpoint_io as checkpoint_io
from facesdk.backends import create_backend
from facesdk.testing import tiny_manifest
from facesdk.training.torch_backend import TorchBackend


class _Fake(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n = x.shape[0]
        return {"age": torch.zeros(n, 9), "gender": torch.ones(n, 2), "emotion": torch.zeros(n, 7)}


def test_create_backend_finds_the_torch_backend_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint_io, "load_checkpoint", lambda path: _Fake())
    backend = create_backend("torch", tiny_manifest(), "ckpt")
    assert isinstance(backend, TorchBackend)
    out = backend.run(np.zeros((2, 3, 32, 32), np.float32))
    assert out["gender"].shape == (2, 2) and float(out["gender"].sum()) == 4.0
