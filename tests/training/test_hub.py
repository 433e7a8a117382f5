"""Pretrained weights from a hub that cannot be reached: one line (exit 2), quickly, with the ways out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _one_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture()
def config(tmp_path: Path, tiny_synth, tiny_config) -> Path:  # noqa: ANN001
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_synth.train, tiny_synth.val, optim={"epochs": 1})))
    return path


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
def test_train_with_hub_weights_offline_is_one_line(config: Path, tmp_path: Path, mode: str) -> None:
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
    assert "Retrying" not in proc.stderr  # no minute of huggingface_hub retries against a dead endpoint
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
    assert "Retrying" not in proc.stderr  # no minute of huggingface_hub retries against a dead endpoint
    line = _one_error(proc.stderr)
    assert "cannot fetch the pretrained weights of PE-Core-T-16-384" in line and "HF_HUB_OFFLINE=1" in line
    assert not [r for r in proc.stderr.splitlines() if "Failed to download" in r]
    assert not out.exists()
