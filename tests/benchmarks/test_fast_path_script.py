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
    cmd = [sys.executable, "-m", "benchmarks.fast_path", "--tiny", "--out", str(out), "--rounds", "1",
           "--reps", "1", "1", "--train", "32", "--held-out", "16", "--calib-count", "16"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("CPU: ")
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["graph"], r["path"]): r for r in report["rows"]}
    reference = rows["interleaved", "onnxruntime fp32"]
    assert reference["ratio_b8"] == 1.0 and min(reference["agreement"].values()) == 1.0
    # the half graph is the same function: ONNX Runtime FP32 on it agrees on every crop
    assert min(rows["half", "onnxruntime fp32"]["agreement"].values()) == 1.0
    # the variants are exact rewrites of the half graph: ORT FP32 agrees on every crop there too
    for variant in ("half + rope_all_tokens", "half + attention23"):
        assert min(rows[variant, "onnxruntime fp32"]["agreement"].values()) == 1.0
    assert report["variants"]["attention23"]["ops"]["Attention"] > 0
    assert report["variants"]["attention23"]["ops"]["Softmax"] == 0
    assert report["variants"]["rope_all_tokens"]["modules_changed"] == 2  # depth 2
    assert ("half", "onnxruntime int8 (Q/DQ)") in rows and report["gate"]["held_out"] == 8
    assert {g for g, _ in rows} == {"interleaved", "half", "half + rope_all_tokens", "half + attention23"}
    text = out.with_suffix(".md").read_text()
    assert "stand-in for hub weights" in text and "x ORT FP32 (b8)" in text
    assert "## What each step brings" in text and "NNCF): not measured" in text


@pytest.mark.slow
def test_resolution_tiny_run_prints_ms_per_face(tmp_path: Path) -> None:
    out = tmp_path / "resolution"
    cmd = [sys.executable, "-m", "benchmarks.resolution", "--out", str(out), "--sizes", "32", "48",
           "--depth", "1", "--rounds", "1", "--reps", "1", "1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert {r["size"] for r in rows} == {32, 48}
    assert all(r["ms_per_face_b8"] > 0 for r in rows)
    assert "ms per face" in proc.stdout
