"""The engine-vs-ONNX check without a GPU: a stand-in engine (ONNX Runtime underneath) that flips
known crops must fail it, the faithful one must pass, and the record names its crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import facesdk.backends.tensorrt as trt_backend
from facesdk.backends.onnxruntime import OnnxFileBackend
from facesdk.contract.export_manifest import load_export_manifest
from facesdk.export.errors import ParityError
from facesdk.export.tensorrt_check import compare_engine_with_onnx
from facesdk.testing import make_tiny_export


def _engine(flip_rows: int):  # noqa: ANN202 - a class
    class FakeEngine:
        """Runs the fp32 ONNX; the first ``flip_rows`` rows of every call get another gender."""

        name, max_batch = "tensorrt", 8

        def __init__(self, manifest: object, path: Path) -> None:
            self._ort = OnnxFileBackend(Path(path).with_name("model.onnx"))

        def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
            out = self._ort.run(batch)
            out["gender"][:flip_rows] = out["gender"][:flip_rows, ::-1].copy()
            return out

        def __enter__(self) -> FakeEngine:
            return self

        def __exit__(self, *exc: object) -> None:
            self._ort.close()

    return FakeEngine


@pytest.fixture()
def export(tmp_path: Path) -> Path:
    make_tiny_export(tmp_path, max_batch=8)
    (tmp_path / "model.fp16.engine").write_bytes(b"stand-in")
    return tmp_path


def test_faithful_engine_passes_and_names_its_crops(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trt_backend, "TensorRTBackend", _engine(0))
    crops = np.random.default_rng(0).standard_normal((24, 3, 32, 32)).astype(np.float32)
    manifest = load_export_manifest(export)
    figures = compare_engine_with_onnx(manifest, export / "model.fp16.engine", export / "model.onnx", "fp16",
                                       crops=crops, crops_source="test crops")  # fmt: skip
    assert figures["inputs"] == "test crops" and figures["samples"] == 24
    assert all(t["agree"] == 24 and t["max_abs_diff"] == 0.0 for t in figures["tasks"].values())


def test_engine_that_flips_known_crops_fails(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trt_backend, "TensorRTBackend", _engine(1))  # one row per batch of 8
    crops = np.random.default_rng(0).standard_normal((24, 3, 32, 32)).astype(np.float32)
    manifest = load_export_manifest(export)
    with pytest.raises(ParityError, match="gender"):
        compare_engine_with_onnx(manifest, export / "model.fp16.engine", export / "model.onnx", "fp16",
                                 crops=crops, crops_source="test crops")  # fmt: skip
