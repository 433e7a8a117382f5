"""The TensorRT backend's Python logic against fake ``tensorrt`` and ``cuda.bindings`` modules.

The fakes keep "device" buffers in host numpy arrays, so the backend's allocation, copies,
shape setting and output handling run for real without a GPU.
"""

from __future__ import annotations

import ctypes
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from facesdk.backends import create_backend, run_batched
from facesdk.backends.tensorrt import _check
from facesdk.contract.export_manifest import ModelEntry
from facesdk.contract.manifest_io import FileEntry
from facesdk.errors import BackendError
from facesdk.testing import tiny_manifest

OUTPUTS = {"age": 9, "gender": 2, "emotion": 7}


def _view(ptr: int, nbytes: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer((ctypes.c_char * nbytes).from_address(ptr), dtype=np.float32).reshape(shape)


class FakeContext:
    def __init__(self) -> None:
        self.shape: tuple[int, ...] = ()
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shape = tuple(shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.shape[0], OUTPUTS[name])

    def execute_async_v3(self, stream: int) -> bool:
        n = self.shape[0]
        x = _view(self.addresses["input"], n * 3 * 32 * 32 * 4, self.shape)
        for name, classes in OUTPUTS.items():
            out = _view(self.addresses[name], n * classes * 4, (n, classes))
            out[:] = x.mean(axis=(1, 2, 3))[:, None] + np.arange(classes)
        return True


class FakeEngine:
    names = ["input", *OUTPUTS]

    def __init__(self, profile_max: int) -> None:
        self.num_io_tensors = len(self.names)
        self.profile_max = profile_max

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> str:
        return "in" if name == "input" else "out"

    def get_tensor_shape(self, name: str) -> list[int]:
        return [-1, 3, 32, 32] if name == "input" else [-1, OUTPUTS[name]]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        return [(1, 3, 32, 32), (self.profile_max, 3, 32, 32), (self.profile_max, 3, 32, 32)]

    def get_tensor_dtype(self, name: str) -> str:
        return "float"

    def create_execution_context(self) -> FakeContext:
        return FakeContext()


@pytest.fixture()
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    memory: dict[int, np.ndarray] = {}

    def malloc(nbytes: int) -> tuple[int, int]:
        buf = np.zeros(nbytes, np.uint8)
        memory[buf.ctypes.data] = buf
        return 0, buf.ctypes.data

    def memcpy(dst: int, src: int, nbytes: int, kind: object, stream: object) -> tuple[int]:
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    cudart = types.SimpleNamespace(
        cudaSetDevice=lambda d: (0,),
        cudaGetDeviceProperties=lambda d: (0, types.SimpleNamespace(major=8, minor=9)),
        cudaStreamCreate=lambda: (0, 7),
        cudaMalloc=malloc,
        cudaFree=lambda ptr: (memory.pop(ptr, None), 0)[1:],
        cudaMemcpyAsync=memcpy,
        cudaStreamSynchronize=lambda s: (0,),
        cudaStreamDestroy=lambda s: (0,),
        cudaMemcpyKind=types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2),
    )
    trt = types.SimpleNamespace(
        __version__="10.13.0.35",
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
        nptype=lambda dtype: np.float32,
    )
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: FakeEngine(4))
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    runtime = types.ModuleType("cuda.bindings.runtime")
    runtime.__dict__.update(vars(cudart))
    for name, module in {
        "tensorrt": trt,
        "cuda": cuda,
        "cuda.bindings": bindings,
        "cuda.bindings.runtime": runtime,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(memory=memory, trt=trt)


def _export(tmp_path: Path, record: dict) -> tuple[object, Path]:
    path = tmp_path / "model_fp16.engine"
    path.write_bytes(b"plan")
    entry = ModelEntry(FileEntry.of(tmp_path, path.name), "engine", "fp16", tensorrt=record)
    return tiny_manifest(max_batch=8, models={"engine-fp16": entry}), path


def test_fake_engine_runs_split_at_profile_max(tmp_path: Path, fake_gpu: types.SimpleNamespace) -> None:
    manifest, path = _export(tmp_path, {"version": "10.13.0.35", "compute_capability": "8.9"})
    backend = create_backend("tensorrt", manifest, path)
    assert backend.max_batch == 4  # the engine profile is smaller than the manifest's 8
    batch = np.random.default_rng(0).normal(size=(10, 3, 32, 32)).astype(np.float32)
    out = run_batched(backend, batch)
    np.testing.assert_allclose(out["age"][:, 0], batch.mean(axis=(1, 2, 3)), rtol=1e-5, atol=1e-6)
    assert out["emotion"].shape == (10, 7)
    backend.close()
    assert fake_gpu.memory == {}
    with pytest.raises(BackendError, match="closed"):
        backend.run(batch[:1])


def test_fake_engine_from_other_gpu_is_refused(tmp_path: Path, fake_gpu: types.SimpleNamespace) -> None:
    manifest, path = _export(tmp_path, {"version": "10.13.0.35", "compute_capability": "9.0", "gpu": "H100"})
    with pytest.raises(BackendError, match="built on H100 with compute capability 9.0"):
        create_backend("tensorrt", manifest, path)


def test_check_unpacks_cuda_results() -> None:
    assert _check((0, 5), "x") == 5
    with pytest.raises(BackendError, match="cudaMalloc failed"):
        _check((2, None), "cudaMalloc")
