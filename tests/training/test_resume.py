"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests.helpers import train_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(tiny_synth, tiny_config, tmp_path: Path) -> None:  # noqa: ANN001
    config = tmp_path / "c.yaml"
    cfg = tiny_config(tiny_synth.train, tiny_synth.val, optim={"epochs": 3, "batch_size": 4, "accumulate": 2})
    config.write_text(yaml.safe_dump(cfg))
    ref = tmp_path / "ref"
    subprocess.run(train_command(config, ref), cwd=ROOT, check=True, capture_output=True, timeout=600)

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        train_command(config, out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not (out / "state" / "state.json").exists():
        assert proc.poll() is None, "the run ended before its first state save"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with pytest.raises(subprocess.CalledProcessError):  # refuses to overwrite a state without --resume
        subprocess.run(train_command(config, out), cwd=ROOT, check=True, capture_output=True, timeout=600)
    resumed = subprocess.run(
        train_command(config, out, "--resume"),
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "resumed at epoch" in resumed.stderr  # it continued, it did not start over

    a, b = (
        load_file(str(ref / "state/trainable.safetensors")),
        load_file(str(out / "state/trainable.safetensors")),
    )
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).abs().max().item() <= 1e-6, name
    assert (ref / "log.csv").read_text() == (out / "log.csv").read_text()  # same losses, lrs and metrics
    for name in ("checkpoint/checkpoint.json", "checkpoint/model.safetensors", "curves.png", "config.yaml"):
        assert (out / name).is_file()
