"""Session fixtures shared across stages: one smoke training run whose checkpoint others reuse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train ``configs/smoke.yaml`` once (subprocess) and return its output folder.

    ``<out>/checkpoint`` is a trained checkpoint directory (the export and SDK tests reuse it).
    """
    pytest.importorskip("torch", reason="the smoke run needs the [train] extra")
    out = tmp_path_factory.mktemp("smoke_run")
    cmd = [
        sys.executable,
        "-m",
        "facesdk.training",
        "train",
        "--config",
        str(ROOT / "configs/smoke.yaml"),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        pytest.fail(f"smoke training failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return out
