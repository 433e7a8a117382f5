"""Smoke runs of benchmarks/fast_path.py and benchmarks/resolution.py at tiny settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fast_path_tiny_run_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "fast_path"
    cmd = [sys.executable, str(ROOT / "benchmarks/fast_path.py"), "--tiny", "--out", str(out), "--rounds", "1",
           "--reps", "1", "1", "--train", "32", "--held-out", "16"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("CPU: ")
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["graph"], r["path"]): r for r in report["rows"]}
    reference = rows["interleaved", "onnxruntime fp32"]
    assert reference["ratio_b8"] == 1.0 and min(reference["agreement"].values()) == 1.0
    # the half graph is the same function: ONNX Runtime FP32 on it agrees on every crop
    assert min(rows["half", "onnxruntime fp32"]["agreement"].values()) == 1.0
    assert {g for g, _ in rows} == {"interleaved", "half"}
    text = out.with_suffix(".md").read_text()
    assert "stand-in for hub weights" in text and "x ORT FP32 (b8)" in text


@pytest.mark.slow
def test_resolution_tiny_run_prints_ms_per_face(tmp_path: Path) -> None:
    out = tmp_path / "resolution"
    cmd = [sys.executable, str(ROOT / "benchmarks/resolution.py"), "--out", str(out), "--sizes", "32", "48",
           "--depth", "1", "--rounds", "1", "--reps", "1", "1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert {r["size"] for r in rows} == {32, 48}
    assert all(r["ms_per_face_b8"] > 0 for r in rows)
    assert "ms per face" in proc.stdout
