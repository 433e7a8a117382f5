"""Native TensorRT backend (TensorRT 10+ Python API, cuda-python ``cuda.bindings`` buffers).

``tensorrt`` and ``cuda`` are imported only when an engine is loaded (``[tensorrt]`` extra).
An engine is refused, with a message saying what to do, when the TensorRT version or GPU
compute capability recorded in its manifest differ from the running ones: serialized plans
only run on the TensorRT release and GPU architecture that built them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..contract.export_manifest import ExportManifest, ModelEntry
from ..errors import BackendError, ManifestError, require
from .base import ClosingBackend, check_io

__all__ = ["TensorRTBackend", "check_engine_compat", "engine_entry", "parse_compute_capability"]

logger = logging.getLogger(__name__)


def parse_compute_capability(value: Any) -> tuple[int, int]:
    """Read a compute capability recorded as ``"8.9"``, ``[8, 9]`` or ``{"major":8,"minor":9}``."""
    try:
        if isinstance(value, Mapping):
            return int(value["major"]), int(value["minor"])
        if isinstance(value, str):
            major, minor = value.split(".")[:2]
            return int(major), int(minor)
        major, minor = list(value)[:2]
        return int(major), int(minor)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"cannot read compute capability {value!r}; expected '8.9' or [8, 9]") from exc


def _version_key(version: str) -> tuple[str, ...]:
    return tuple(str(version).split("+")[0].split(".")[:3])


def check_engine_compat(
    recorded: Mapping[str, Any] | None, running_version: str, running_cc: tuple[int, int], source: str
) -> None:
    """Refuse an engine built for another TensorRT release or GPU architecture.

    Args:
        recorded: The manifest entry's ``tensorrt`` mapping (``version``, ``compute_capability``,
            optionally ``gpu``).
        running_version: ``tensorrt.__version__`` of this process.
        running_cc: ``(major, minor)`` of the GPU in use.
        source: The engine file, for messages.

    Raises:
        BackendError: Versions or compute capabilities differ, or nothing was recorded.
    """
    if not recorded:
        raise BackendError(
            f"{source}: its manifest records no TensorRT version or GPU, so compatibility cannot be checked; "
            "rebuild the engine with 'facesdk export build' on this machine"
        )
    version = recorded.get("version") or recorded.get("tensorrt_version")
    cc_value = recorded.get("compute_capability")
    if version is None or cc_value is None:
        raise BackendError(
            f"{source}: manifest 'tensorrt' entry needs 'version' and 'compute_capability', got {dict(recorded)}"
        )
    built_cc = parse_compute_capability(cc_value)
    problems = []
    if _version_key(version) != _version_key(running_version):
        problems.append(f"it was built with TensorRT {version}, this process runs TensorRT {running_version}")
    if built_cc != tuple(running_cc):
        gpu = recorded.get("gpu", "a GPU")
        problems.append(
            f"it was built on {gpu} with compute capability {built_cc[0]}.{built_cc[1]}, "
            f"this GPU has {running_cc[0]}.{running_cc[1]}"
        )
    if problems:
        raise BackendError(
            f"refusing engine {source}: {'; '.join(problems)}. TensorRT engines only run where they were "
            "built: rebuild it here with 'facesdk export build --precision fp16' or use the ONNX model "
            "(backend='onnxruntime')"
        )


def engine_entry(manifest: ExportManifest, path: str | os.PathLike[str]) -> ModelEntry:
    """The manifest entry whose file is ``path`` (by file name) and whose format is ``engine``."""
    name = Path(path).name
    for entry in manifest.models.values():
        if entry.format == "engine" and Path(entry.file.path).name == name:
            return entry
    raise ManifestError(f"the export manifest lists no engine file named {name!r}")


def _check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, value...)`` tuple, raising on error."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(getattr(err, "value", err)) != 0:
        raise BackendError(f"CUDA call {what} failed with error {err}")
    return rest[0] if len(rest) == 1 else tuple(rest)


class TensorRTBackend(ClosingBackend):
    """Runs a serialized TensorRT engine.

    Args:
        manifest: The export manifest (tensor names, shapes, max batch, TensorRT record).
        path: The ``.engine`` file, listed in the manifest.
        device: CUDA device ordinal.
    """

    name = "tensorrt"

    def __init__(self, manifest: ExportManifest, path: str | os.PathLike[str], device: int = 0) -> None:
        require("tensorrt", "tensorrt", "running TensorRT engines")  # names the extra when missing
        import tensorrt as trt  # statically typed: tests/typecheck checks these calls against the stubs

        cudart = require("cuda.bindings.runtime", "tensorrt", "running TensorRT engines")
        self._trt, self._cudart = trt, cudart
        self.manifest, self.path = manifest, Path(path)
        entry = engine_entry(manifest, path)
        _check(cudart.cudaSetDevice(device), "cudaSetDevice")
        props = _check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        check_engine_compat(entry.tensorrt, trt.__version__, (props.major, props.minor), str(path))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise BackendError(f"TensorRT could not deserialize {path}; rebuild the engine on this machine")
        self._context = self._engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._inputs, self._outputs = self._tensor_shapes()
        check_io(str(path), manifest, self._inputs, self._outputs)
        input_name = manifest.input.name
        profile_max = self._engine.get_tensor_profile_shape(input_name, 0)[2]
        self.max_batch = min(manifest.max_batch, int(profile_max[0]))
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in self._all_names()}
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _all_names(self) -> list[str]:
        return [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]

    def _tensor_shapes(self) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        import tensorrt as trt

        inputs, outputs = {}, {}
        for name in self._all_names():
            shape = list(self._engine.get_tensor_shape(name))
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs[name] = shape
            else:
                outputs[name] = shape
        return inputs, outputs

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr), "cudaFree")
            ptr = int(_check(self._cudart.cudaMalloc(nbytes), "cudaMalloc"))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def describe(self) -> str:
        return f"tensorrt {self._trt.__version__} ({self.path.name})"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._context is None:
            raise BackendError("this backend was closed")
        if batch.ndim != 4 or not 1 <= len(batch) <= self.max_batch:
            raise BackendError(
                f"batch must be N x C x H x W with 1 <= N <= {self.max_batch}, got {batch.shape}"
            )
        cudart, kind = self._cudart, self._cudart.cudaMemcpyKind
        name = self.manifest.input.name
        host_in = np.ascontiguousarray(batch, dtype=self._dtypes[name])
        self._context.set_input_shape(name, tuple(host_in.shape))
        ptr = self._buffer(name, host_in.nbytes)
        _check(
            cudart.cudaMemcpyAsync(
                ptr, host_in.ctypes.data, host_in.nbytes, kind.cudaMemcpyHostToDevice, self._stream
            ),
            "cudaMemcpyAsync",
        )
        self._context.set_tensor_address(name, ptr)
        hosts = {}
        for out in self._outputs:
            host = np.empty(tuple(self._context.get_tensor_shape(out)), dtype=self._dtypes[out])
            self._context.set_tensor_address(out, self._buffer(out, max(host.nbytes, 1)))
            hosts[out] = host
        if not self._context.execute_async_v3(int(self._stream)):
            raise BackendError(f"TensorRT execution of {self.path} failed")
        for out, host in hosts.items():
            _check(
                cudart.cudaMemcpyAsync(
                    host.ctypes.data,
                    self._buffers[out][0],
                    host.nbytes,
                    kind.cudaMemcpyDeviceToHost,
                    self._stream,
                ),
                "cudaMemcpyAsync",
            )
        _check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return {o.name: hosts[o.name].astype(np.float32, copy=False) for o in self.manifest.outputs}

    def close(self) -> None:
        if self._context is None:
            return
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        self._cudart.cudaStreamDestroy(self._stream)
        self._context = self._engine = self._runtime = None
