"""``benchmarks/memory.py`` measures each child's own peak and records a command a user can run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.memory import doc_command, peak_mib
from facesdk.faces.model_store import PACKAGED_DETECTOR

ROOT = Path(__file__).resolve().parents[2]


def test_a_child_peak_is_its_own_not_the_parents() -> None:
    """A forked child starts with its parent's peak: a bare launcher forks it, so a child that
    holds nothing reads small while this process holds 300 MiB, and one that holds 200 MiB reads so."""
    held = np.ones(300 << 17)  # 300 MiB, touched
    idle = peak_mib([sys.executable, "-S", "-c", "pass"])
    busy = peak_mib([sys.executable, "-c", "import numpy; a = numpy.ones(200 << 17)"])
    assert held.sum() > 0
    assert idle["mib"] < 60, idle
    assert 200 < busy["mib"] < 280, busy
    assert idle["faults"] > 0 and idle["wall_s"] > 0


def test_the_documented_command_names_no_local_file() -> None:
    argv = ["--model", "/tmp/x/export", "--video=/tmp/six.avi", "--work", "/tmp/w", "--repeats", "3"]
    assert doc_command(argv) == "python -m benchmarks.memory --model EXPORT_DIR --repeats 3"


def test_memory_on_a_tiny_export(tmp_path: Path) -> None:
    """The script runs end to end at tiny settings and writes the tables it documents."""
    from facesdk.testing import make_tiny_export

    if not PACKAGED_DETECTOR.is_file():
        pytest.skip(f"YuNet test model not found at {PACKAGED_DETECTOR}")
    pytest.importorskip("skimage.data", reason="scikit-image provides the astronaut the video is made of")
    make_tiny_export(tmp_path / "export")
    out = tmp_path / "memory.md"
    cmd = [sys.executable, "-m", "benchmarks.memory", "--model", str(tmp_path / "export"), "--frames", "3",
           "--repeats", "1", "--batches", "1", "--timing-repeats", "1", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    groups = {row["group"] for row in report["rows"]}
    import importlib.util

    openvino = {"openvino"} if importlib.util.find_spec("openvino") else set()
    assert groups == {"analyze", "parts", "stream batch", "knob undone", *openvino}
    assert all(row["mib"] > 20 for row in report["rows"])
    assert "--backend auto" in out.read_text() and "EXPORT_DIR" in report["command"]
