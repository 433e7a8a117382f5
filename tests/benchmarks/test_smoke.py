"""Every script in ``benchmarks/`` runs at tiny settings (``python -m benchmarks.<name>``).

The timings these runs print mean nothing; what is checked is that each script still runs end
to end through facesdk.bench and facesdk.backends and writes the report it documents.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facesdk.faces.model_store import PACKAGED_DETECTOR

ROOT = Path(__file__).resolve().parents[2]
YUNET = PACKAGED_DETECTOR
SCRIPTS = ("audience", "backbones", "backbones_report", "cnn_int8", "fast_path", "gpu_timing", "graph_variants", "int8_cpu",
           "memory", "methods", "parallel_calls", "resolution", "scale", "sdk_pipeline", "stream", "train_methods")  # fmt: skip


def _run(module: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def yunet() -> Path:
    if not YUNET.is_file():
        pytest.skip(f"YuNet test model not found at {YUNET}")
    return YUNET


def test_every_script_is_listed() -> None:
    """A new script joins SCRIPTS (and so the import check below and a smoke run)."""
    found = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - {
        "__init__",
        "common",
        "methods_report",
        "stream_live",
        "stream_report",
    }
    assert found == set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_is_a_module_of_the_package(name: str) -> None:
    """No sys.path tricks: each script imports as benchmarks.<name> (torch-free ones without torch)."""
    module = importlib.import_module(f"benchmarks.{name}")
    assert callable(getattr(module, "main", None)), f"benchmarks/{name}.py has no main()"


def test_backbones_report_rerenders_a_saved_run(tmp_path: Path) -> None:
    saved = tmp_path / "backbones.json"
    shutil.copy(ROOT / "docs" / "benchmarks" / "backbones.json", saved)
    _run("backbones_report", str(saved))
    assert "| backbone" in (tmp_path / "backbones.md").read_text()


@pytest.mark.slow
def test_sdk_pipeline_on_a_tiny_export(tmp_path: Path, yunet: Path) -> None:
    from facesdk.testing import make_tiny_export

    make_tiny_export(tmp_path / "export")
    proc = _run("sdk_pipeline", "--model", str(tmp_path / "export"), "--detector", str(yunet), "--frames", "2",
                "--soak", "0", "--doc", str(tmp_path / "sdk.md"))  # fmt: skip
    assert (tmp_path / "sdk.md").is_file(), proc.stdout[-2000:]


def test_parallel_calls_on_a_tiny_export(tmp_path: Path) -> None:
    from facesdk.testing import make_tiny_export

    make_tiny_export(tmp_path / "export")
    out = tmp_path / "parallel_calls.md"
    _run(
        "parallel_calls",
        "--model",
        str(tmp_path / "export"),
        "--seconds",
        "0.3",
        "--rounds",
        "2",
        "--out",
        str(out),
    )
    report = json.loads(out.with_suffix(".json").read_text())
    assert [len(r["runs"]) for r in report["rows"]] == [2, 2, 2, 2]
    assert all(run["crops_per_s"] > 0 for r in report["rows"] for run in r["runs"])
    text = out.read_text()
    assert (
        "| two calls at once, ONNX Runtime's threads (the default) |" in text and "--model EXPORT_DIR" in text
    )
    assert str(tmp_path) not in text


def test_audience_on_a_tiny_export(tmp_path: Path, yunet: Path) -> None:
    from facesdk.testing import make_tiny_export

    make_tiny_export(tmp_path / "export")
    _run("audience", "--model", str(tmp_path / "export"), "--detector", str(yunet), "--seconds", "1",
         "--warmup-seconds", "0.5", "--memory-minutes", "3", "--out", str(tmp_path / "audience.md"))  # fmt: skip
    report = json.loads((tmp_path / "audience.json").read_text())
    assert report["overhead"]["frames"] > 0 and report["overhead"]["share"] > 0
    assert report["memory"]["people"] > 0 and report["memory"]["open_visits_after_close"] == 0
    assert "--detector" not in report["command"]


@pytest.mark.slow
def test_scale_multistream_on_a_tiny_export(tmp_path: Path, yunet: Path) -> None:
    doc = tmp_path / "scale.md"
    _run("scale", "--skip-serving", "--frames", "2", "--detector", str(yunet), "--doc", str(doc))
    assert "## Multi-stream (one engine)" in doc.read_text()


def test_train_methods_forwards_to_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import train_methods

    seen: list[list[str]] = []
    monkeypatch.setattr(train_methods.subprocess, "run", lambda cmd, **kw: seen.append(cmd) or _Done())
    assert train_methods.main(["--steps", "1"]) == 0
    assert seen[0][1:4] == ["-m", "benchmarks.methods", "--methods=lora,dora,full"]
    with pytest.raises(SystemExit, match="always compares"):
        train_methods.main(["--methods", "lora"])


class _Done:
    returncode = 0


@pytest.mark.slow
def test_int8_cpu_at_tiny_size(tmp_path: Path, yunet: Path) -> None:
    pytest.importorskip("torch", reason="int8_cpu builds its model with the [train] extra")
    _run("int8_cpu", "--img-size", "32", "--depth", "1", "--iters", "1", "--rounds", "1",
         "--work", str(tmp_path / "work"), "--out", str(tmp_path), "--detector", str(yunet))  # fmt: skip
    text = (tmp_path / "int8.md").read_text()
    assert "ORT FP32" in text and "dynamic int8" in text


@pytest.mark.slow
def test_methods_at_tiny_settings(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the methods benchmark trains (the [train] extra)")
    out = tmp_path / "methods.md"
    _run("methods", "--methods", "lora", "--steps", "1", "--count", "48", "--batch", "8", "--img-size", "32",
         "--depth", "1", "--work", str(tmp_path / "work"), "--out", str(out))  # fmt: skip
    assert "lora" in out.read_text()


def _tiny_cnn_run(script: str, tmp_path: Path, yunet: Path, *extra: str) -> dict:
    """Run a CNN benchmark on one small ResNet for one step; return its JSON results."""
    pytest.importorskip("torch", reason=f"the {script} benchmark trains (the [train] extra)")
    out = tmp_path / f"{script}.md"
    common = ["--backbones", "resnet18", "--steps", "1", "--batch", "4", "--synth-count", "24",
              "--calib-count", "16", "--rounds", "1", "--detector", str(yunet)]  # fmt: skip
    _run(script, *common, *extra, "--work", str(tmp_path / "work"), "--out", str(out))
    assert out.is_file()
    return json.loads(out.with_suffix(".json").read_text())


@pytest.mark.slow
def test_backbones_at_tiny_settings(tmp_path: Path, yunet: Path) -> None:
    extra = ("--methods", "norm", "--train-size", "32", "--deploy-size", "32", "--repeats", "1")
    report = _tiny_cnn_run("backbones", tmp_path, yunet, *extra)
    assert report["deploy"][0]["backbone"] == "resnet18"


@pytest.mark.slow
def test_cnn_int8_at_tiny_settings(tmp_path: Path, yunet: Path) -> None:
    extra = ("--size", "32", "--test-count", "10", "--int8-method", "minmax")
    report = _tiny_cnn_run("cnn_int8", tmp_path, yunet, *extra)
    assert set(report["deploy"][0]["agreement"]["test"]) >= {"ort fp32", "ort int8"}


@pytest.mark.slow
def test_gpu_timing_on_cpu(tmp_path: Path, smoke_run: Path) -> None:
    """On a machine without a GPU the torch and ONNX Runtime CPU rows still run."""
    from facesdk.export import ExportOptions, run_export

    ckpt = smoke_run / "checkpoint"
    run_export(ExportOptions(ckpt=ckpt, out=tmp_path / "export", onnx_only=True, max_batch=2))
    proc = _run("gpu_timing", "--export", str(tmp_path / "export"), "--ckpt", str(ckpt), "--batches", "1",
                "--warmup", "1", "--iters", "2")  # fmt: skip
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| ort-cpu"))
    assert "failed" not in row
