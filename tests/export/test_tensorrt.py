"""TensorRT engines (GPU only): build, I/O check, agreement with ONNX Runtime; settings checks run anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesdk.errors import ConfigError
from facesdk.export.tensorrt_build import EngineFromOnnx


def test_loader_stores_arguments_and_validates(tmp_path: Path) -> None:
    loader = EngineFromOnnx(tmp_path / "m.onnx", "fp16", "input", (3, 64, 64), (1, 4, 8))
    assert loader.batch == (1, 4, 8)  # nothing built until called
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        EngineFromOnnx(tmp_path / "m.onnx", "fp16", "input", (3, 64, 64), (1, 16, 8))
    with pytest.raises(ConfigError, match="typing"):
        EngineFromOnnx(tmp_path / "m.onnx", "fp16", "input", (3, 64, 64), (1, 4, 8), typing="loose")


@pytest.mark.gpu
def test_fp16_engine(checkpoints: dict[str, Path], tmp_path: Path, tensorrt_gpu: None) -> None:
    from facesdk.contract.export_manifest import load_export_manifest
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export

    out = tmp_path / "out"
    run_export(
        ExportOptions(
            ckpt=checkpoints["dora"],
            out=out,
            precisions="fp32,fp16",
            max_batch=8,
            timing_cache=tmp_path / "t.cache",
        )
    )
    manifest = load_export_manifest(out, verify=True)
    entry = manifest.model("engine", "fp16")
    assert entry.tensorrt and {"version", "gpu", "compute_capability"} <= set(entry.tensorrt)
    tasks = manifest.parity["engine-fp16"]["tasks"]
    assert all(t["top1_agreement"] >= 0.999 for t in tasks.values())
    assert (tmp_path / "t.cache").stat().st_size > 0
    plan = (out / entry.file.path).read_bytes()
    assert not plan.startswith(b"{")  # a raw plan, no JSON glued in front
