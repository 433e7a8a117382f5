"""The TensorRT build code against a stand-in ``tensorrt`` module (CPU): call sequence, typing, cache, manifest.

These tests check the export's own logic (which flags for which release, the profile, the timing
cache, the manifest record); only the GPU tests in ``test_tensorrt.py`` prove a real build.
"""

from __future__ import annotations

import sys
import types
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest

from facesdk.errors import ConfigError
from facesdk.export.tensorrt_build import EngineFromOnnx, check_engine_io


class _IO(IntEnum):
    INPUT = 0
    OUTPUT = 1


def fake_trt(version: str, weak_flags: bool, log: list[tuple[str, Any]]) -> types.ModuleType:
    """A minimal ``tensorrt`` with the API the export calls; ``log`` records what was called."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    flags: dict[str, int] = {"FP16": 0, "INT8": 1} if weak_flags else {}
    trt.BuilderFlag = IntEnum("BuilderFlag", {**flags, "REFIT": 5})
    trt.NetworkDefinitionCreationFlag = IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
    trt.MemoryPoolType = IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.TensorIOMode = _IO

    class Logger:
        WARNING = 2

        def __init__(self, level: int = 2) -> None:
            pass

    class Cache:
        def serialize(self) -> bytes:
            return b"timing-cache"

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            log.append(("profile", (name, lo, opt, hi)))

    class Config:
        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            log.append(("workspace", size))

        def set_flag(self, flag: Any) -> None:
            log.append(("flag", flag.name))

        def add_optimization_profile(self, profile: Profile) -> None:
            log.append(("add_profile", None))

        def create_timing_cache(self, blob: bytes) -> Cache:
            log.append(("cache_in", bytes(blob)))
            return Cache()

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> None:
            pass

        def get_timing_cache(self) -> Cache:
            return Cache()

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int = 0) -> object:
            log.append(("network_flags", flags))
            return object()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: object, config: Config) -> bytes:
            return b"PLAN"

    class OnnxParser:
        def __init__(self, network: object, logger: Logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            log.append(("parse", Path(path).name))
            return True

    class Engine:
        tensors = [("input", [-1, 3, 64, 64], _IO.INPUT), ("age", [-1, 9], _IO.OUTPUT)]
        num_io_tensors = 2

        def get_tensor_name(self, i: int) -> str:
            return self.tensors[i][0]

        def get_tensor_shape(self, name: str) -> list[int]:
            return next(t[1] for t in self.tensors if t[0] == name)

        def get_tensor_mode(self, name: str) -> _IO:
            return next(t[2] for t in self.tensors if t[0] == name)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, plan: bytes) -> Engine:
            return Engine()

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    return trt


@pytest.mark.parametrize(
    ("version", "weak_flags", "typing", "expect_flags", "expect_network"),
    [
        ("11.4.0", False, "auto", [], 2),  # TensorRT 11: strongly typed, no precision flags
        ("10.16.1", True, "auto", [], 2),  # TensorRT 10 defaults to the same strongly typed build
        ("10.16.1", True, "weak", ["FP16"], 0),  # TensorRT 10 weak typing: the FP16 flag
    ],
)
def test_build_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, weak_flags: bool, typing: str,
    expect_flags: list[str], expect_network: int,
) -> None:  # fmt: skip
    log: list[tuple[str, Any]] = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(version, weak_flags, log))
    cache = tmp_path / "cache" / "t.cache"
    loader = EngineFromOnnx(
        tmp_path / "model.fp16.onnx", "fp16", "input", (3, 64, 64), (1, 4, 8), 1 << 20, cache, typing
    )
    assert loader() == b"PLAN"
    assert ("network_flags", expect_network) in log
    assert [v for k, v in log if k == "flag"] == expect_flags
    assert ("profile", ("input", (1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))) in log
    assert ("workspace", 1 << 20) in log and ("cache_in", b"") in log
    assert cache.read_bytes() == b"timing-cache"  # persisted for the next build
    log.clear()
    loader()
    assert ("cache_in", b"timing-cache") in log


def test_weak_typing_refused_on_tensorrt_11(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("11.4.0", False, []))
    loader = EngineFromOnnx(tmp_path / "m.onnx", "fp16", "input", (3, 64, 64), (1, 4, 8), typing="weak")
    with pytest.raises(ConfigError, match="weak typing was removed"):
        loader()


def test_engine_io_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from facesdk.export.errors import ExportError

    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("11.4.0", False, []))
    check_engine_io(b"PLAN", "input", (3, 64, 64), {"age": 9})
    with pytest.raises(ExportError, match="differ"):
        check_engine_io(b"PLAN", "input", (3, 64, 64), {"age": 9, "gender": 2})


def test_pipeline_records_engine(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facesdk.contract.export_manifest import load_export_manifest
    from facesdk.export import options as export_options
    from facesdk.export import pipeline, tensorrt_check
    from facesdk.export.options import ExportOptions

    log: list[tuple[str, Any]] = []
    trt = fake_trt("11.4.0", False, log)
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda plan: _engine3())
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(export_options, "tensorrt_unavailable_reason", lambda: None)
    monkeypatch.setattr(
        pipeline, "cuda_device_info", lambda: {"gpu": "Fake GPU", "compute_capability": "8.9"}
    )
    figures = {"samples": 512, "tasks": {"age": {"top1_agreement": 1.0}}}
    monkeypatch.setattr(tensorrt_check, "compare_engine_with_onnx", lambda *a, **k: figures)
    out = tmp_path / "out"
    options = ExportOptions(ckpt=checkpoints["dora"], out=out, precisions="fp16", max_batch=4,
                            timing_cache=tmp_path / "t.cache")  # fmt: skip
    pipeline.run_export(options)
    manifest = load_export_manifest(out, verify=True)
    entry = manifest.model("engine", "fp16")
    assert entry.file.path == "model.fp16.engine" and (out / "model.fp16.engine").read_bytes() == b"PLAN"
    assert entry.tensorrt["version"] == "11.4.0" and entry.tensorrt["compute_capability"] == "8.9"
    assert entry.tensorrt["typing"] == "strong" and entry.tensorrt["profile"] == {
        "min": 1,
        "opt": 4,
        "max": 4,
    }
    assert manifest.parity["engine-fp16"] == figures and manifest.versions["tensorrt"] == "11.4.0"
    assert ("parse", "model.fp16.onnx") in log


def _engine3() -> Any:
    shapes = {"input": [-1, 3, 64, 64], "age": [-1, 9], "gender": [-1, 2], "emotion": [-1, 7]}
    names = list(shapes)
    return types.SimpleNamespace(
        num_io_tensors=4,
        get_tensor_name=lambda i: names[i],
        get_tensor_shape=lambda n: shapes[n],
        get_tensor_mode=lambda n: _IO.INPUT if n == "input" else _IO.OUTPUT,
    )
