"""Training never eats its inputs and every mistake is one line (exit 2): damaged resume state,
``--out`` over the data or config, and pretrained weights from a hub that cannot be reached."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from facesdk.cli import main
from facesdk.errors import ManifestError
from facesdk.training.state import load_state, save_state

ROOT = Path(__file__).resolve().parents[2]


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _one_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


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


@pytest.fixture()
def run_inputs(tmp_path: Path, tiny_synth, tiny_config) -> tuple[Path, Path]:  # noqa: ANN001
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_synth.train, tiny_synth.val, optim={"epochs": 1})))
    return config, Path(tiny_synth.train).parent


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("config folder", "contains the input"),
        ("data folder", "contains the input"),
        ("foreign folder", "did not write"),
    ],
)
def test_train_out_may_not_eat_inputs(
    run_inputs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
    message: str,
) -> None:
    config, data = run_inputs
    if where == "foreign folder":
        out = tmp_path / "documents"
        out.mkdir()
        (out / "thesis.txt").write_text("mine")
    else:
        out = config.parent if where == "config folder" else data
    before = {**_hashes(config.parent), **{f"data/{k}": v for k, v in _hashes(data).items()}}
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert message in _one_error(capsys.readouterr().err)
    assert {**_hashes(config.parent), **{f"data/{k}": v for k, v in _hashes(data).items()}} == before


def test_resume_with_truncated_state_is_one_line(
    run_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = run_inputs
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    _truncate(out / "state" / "state.json")
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--out", str(out), "--resume"]) == 2
    line = _one_error(capsys.readouterr().err)
    assert "training state" in line and "is damaged" in line and "--resume" in line, line


def _offline_env(mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "facesdk-empty-hf-home")  # an empty cache
    if mode == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:  # a closed port: connection refused at once, no real network touched
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    return env


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["offline", "unreachable"])
def test_train_with_hub_weights_offline_is_one_line(
    run_inputs: tuple[Path, Path], tmp_path: Path, mode: str
) -> None:
    config, _ = run_inputs
    argv = ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--set", "model.weights=hub"]
    proc = subprocess.run(
        [sys.executable, "-m", "facesdk", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_offline_env(mode),
        timeout=120,  # huggingface_hub alone would retry for about a minute
    )
    assert proc.returncode == 2, proc.stderr
    line = _one_error(proc.stderr)
    assert "cannot fetch the pretrained weights of vit_pe_core_tiny_patch16_384" in line
    assert ("unreachable" if mode == "unreachable" else "HF_HUB_OFFLINE") in line
    assert "file:PATH" in line and "HF_HUB_OFFLINE=1" in line
    assert not (tmp_path / "run").exists()  # a failed run leaves no empty --out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["offline", "unreachable"])
def test_zeroshot_pretrained_offline_is_one_line(tmp_path: Path, mode: str) -> None:
    pytest.importorskip("open_clip")
    out = tmp_path / "zs"
    proc = subprocess.run(
        [sys.executable, "-m", "facesdk", "zeroshot", "build", "--pretrained", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_offline_env(mode),
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    line = _one_error(proc.stderr)
    assert "cannot fetch the pretrained weights of PE-Core-T-16-384" in line and "HF_HUB_OFFLINE=1" in line
    assert not [r for r in proc.stderr.splitlines() if "Failed to download" in r]
    assert not out.exists()
