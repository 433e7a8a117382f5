"""The training state on disk: a damaged file on --resume is one ManifestError naming it; loading never rewrites it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from facesdk.errors import ManifestError
from facesdk.training.state import load_state, save_state


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _training_objects() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "state.json truncated": lambda d: _truncate(d / "state.json"),
    "state.json not JSON": lambda d: (d / "state.json").write_text("{ not json"),
    "state.json without its fields": lambda d: (d / "state.json").write_text('{"state_version": 1}'),
    "trainable.safetensors truncated": lambda d: _truncate(d / "trainable.safetensors"),
    "optimizer.safetensors truncated": lambda d: _truncate(d / "optimizer.safetensors"),
    "rng.safetensors truncated": lambda d: _truncate(d / "rng.safetensors"),
    "rng.safetensors missing": lambda d: (d / "rng.safetensors").unlink(),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_state_is_one_manifest_error(tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    save_state(state, *_training_objects(), progress={"epoch": 1, "batch": 0, "step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # no staging left beside it
    load_state(state, *_training_objects())  # intact: loads
    DAMAGE[damage](state)
    before = _hashes(tmp_path)
    with pytest.raises(ManifestError, match="is damaged|holds no training state") as info:
        load_state(state, *_training_objects())
    assert str(state) in str(info.value) and "\n" not in str(info.value)
    assert _hashes(tmp_path) == before  # loading never rewrites the state
