"""OpenVINO backend: runs the export's ONNX file on an Intel CPU, GPU or NPU.

``openvino`` is imported only when this backend is created (``[openvino]`` extra). The ONNX
file is read directly (no IR conversion step) and compiled for one device. The inference
precision is a setting the user chooses and the backend reports, never one it changes:

* ``precision_hint="f32"`` (the default) asks for float32 arithmetic, so results match
  ONNX Runtime FP32 to about 1e-5 in the logits;
* ``precision_hint=None`` keeps the device's own default (on CPUs with AVX-512 BF16 or AMX
  that is bf16, faster and less exact); :meth:`OpenVinoBackend.describe` says what was chosen.

Shapes are static by default: the model is compiled once per batch bucket (1, 2, 4, 8, each on
first use, then kept), and a batch is run as a sum of buckets (7 = 4 + 2 + 1; 13 = 8 + 4 + 1).
OpenVINO runs a static shape 1.4-1.5x faster than one dynamic batch axis on the interleaved-RoPE
graph (docs/openvino.md); ``batch_buckets=None`` compiles the one dynamic model instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..contract.export_manifest import ExportManifest
from ..errors import BackendError, ConfigError, require
from .base import ClosingBackend, check_io
from .threads import native_threads_started

__all__ = [
    "OpenVinoBackend",
    "available_devices",
    "check_device",
    "split_into_buckets",
    "DEFAULT_BUCKETS",
    "LEAN_BUCKETS",
    "PRECISION_HINTS",
]

logger = logging.getLogger(__name__)

PRECISION_HINTS = ("f32", "bf16", "f16")
"""Values of OpenVINO's ``INFERENCE_PRECISION_HINT`` this backend passes on (``None``: the device's default)."""

VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")

DEFAULT_BUCKETS = (1, 2, 4, 8)
"""Batch sizes compiled as static shapes (each on first use)."""

LEAN_BUCKETS = (1, 4)
"""The buckets of the OpenVINO paths ``backend="auto"`` picks: each compiled bucket holds its own
repacked weights and activation plan (56-109 MiB each for the edge ViT, docs/openvino.md), and a
ViT's time per face hardly changes with the batch on a CPU, so two buckets serve six faces (4+1+1)
in 56 MiB less than four."""


def split_into_buckets(n: int, buckets: Sequence[int]) -> list[int]:
    """Split a batch of ``n`` into bucket sizes, largest first, with no padding (13 -> [8, 4, 1]).

    ``buckets`` must contain 1, so every ``n`` splits exactly.
    """
    sizes = sorted(set(buckets), reverse=True)
    parts = []
    for size in sizes:
        while n >= size:
            parts.append(size)
            n -= size
    return parts


def _openvino() -> Any:
    return require("openvino", "openvino", "the OpenVINO backend")


def available_devices() -> list[str]:
    """Devices OpenVINO sees on this machine (``["CPU"]``, ``["CPU", "GPU.0", "NPU"]``, ...)."""
    return list(_openvino().Core().available_devices)


def check_device(core: Any, device: str) -> None:
    """Refuse a device this machine lacks, naming those it has.

    A named device is asked for its name first, which loads that device's plugin only: listing
    ``available_devices`` loads and probes every plugin (the GPU and NPU ones too), which costs a
    CPU-only process about 35 MiB of resident memory here (docs/benchmarks/memory.md). The list is
    read only to say what is there when the device is missing.
    """
    if device.split(":")[0] in VIRTUAL_DEVICES:
        return
    try:
        core.get_property(device, "FULL_DEVICE_NAME")
        return
    except Exception:  # OpenVINO raises RuntimeError subclasses of its own for an unknown device
        pass
    available = list(core.available_devices)
    if not any(d == device or d.startswith(device + ".") for d in available):
        raise BackendError(
            f"OpenVINO device {device!r} is not present on this machine; available: "
            f"{', '.join(available) or 'none'} (or AUTO). Pass device= one of those."
        )


def _first_line(exc: BaseException) -> str:
    """OpenVINO's messages span many lines (a C++ check and its source location); keep the first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _dims(port: Any) -> list[Any]:
    return [d.get_length() if d.is_static else "batch" for d in port.get_partial_shape()]


def _port_name(port: Any, wanted: set[str]) -> str:
    """The port's tensor name that the manifest uses (ONNX outputs may carry several names)."""
    names = port.get_names()
    return next((n for n in names if n in wanted), port.get_any_name())


class OpenVinoBackend(ClosingBackend):
    """Runs an exported ONNX model with OpenVINO.

    Args:
        manifest: The export manifest (names, shapes, max batch).
        path: The ``.onnx`` file (an OpenVINO ``.xml`` IR works too).
        device: ``"CPU"``, ``"GPU"``, ``"NPU"``, ``"AUTO"`` or an indexed device (``"GPU.1"``).
        precision_hint: ``"f32"`` (default), ``"bf16"``, ``"f16"`` or ``None`` for the device default.
        num_threads: CPU inference threads (``None``: OpenVINO's default).
        cache_dir: Folder for OpenVINO's compiled-model cache (speeds up GPU/NPU start-up).
        batch_buckets: Static batch sizes to compile (must include 1; those above the manifest's
            max batch are dropped), or ``None`` for one model with a dynamic batch axis.
        profile: Keep OpenVINO's per-node timings (``PERF_COUNT``) for :meth:`op_profile`.
    """

    name = "openvino"

    def __init__(
        self,
        manifest: ExportManifest,
        path: str | os.PathLike[str],
        device: str = "CPU",
        precision_hint: str | None = "f32",
        num_threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        batch_buckets: Sequence[int] | None = DEFAULT_BUCKETS,
        profile: bool = False,
    ) -> None:
        ov = _openvino()
        if precision_hint is not None and precision_hint not in PRECISION_HINTS:
            raise ConfigError(
                f"precision_hint must be one of {PRECISION_HINTS} or None, got {precision_hint!r}"
            )
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        if batch_buckets is not None:
            batch_buckets = tuple(sorted({int(b) for b in batch_buckets if int(b) <= manifest.max_batch}))
            if not batch_buckets or batch_buckets[0] != 1:
                raise ConfigError(
                    f"batch_buckets must include 1 (so every batch splits into buckets), got {batch_buckets}"
                )
        self.manifest = manifest
        self.path = Path(path)
        self.max_batch = manifest.max_batch
        self.device = device
        self.precision_hint = precision_hint
        self.batch_buckets = batch_buckets
        if not self.path.is_file():
            raise BackendError(f"model {self.path} does not exist")
        core = ov.Core()
        check_device(core, device)
        config: dict[str, Any] = {}
        if precision_hint is not None:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        if num_threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        if profile:
            config["PERF_COUNT"] = True
        self._core, self._config = core, config
        self._last: Any = None
        try:
            self._model = core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendError(f"OpenVINO could not read {self.path}: {exc}") from exc
        self._buckets: dict[int | None, tuple[Any, Any]] = {}
        self._ran: set[int | None] = set()
        self.worker_threads: set[int] = set()
        """Native threads the CPU plugin started while compiling and first running each batch size
        (a stream's classifier lowers their priority)."""
        wanted = {manifest.input.name, *(o.name for o in manifest.outputs)}
        self._outputs = [_port_name(p, wanted) for p in self._model.outputs]
        check_io(  # the graph as read: a static reshape to the manifest's size would hide a mismatch
            str(self.path),
            manifest,
            {_port_name(p, wanted): _dims(p) for p in self._model.inputs},
            dict(zip(self._outputs, map(_dims, self._model.outputs), strict=True)),
        )
        self._compiled = self._compile(batch_buckets[0] if batch_buckets else None)
        self._request: Any = self._buckets[batch_buckets[0] if batch_buckets else None][1]
        self.inference_precision = self._read_precision()
        logger.info("openvino %s on %s (inference precision %s)", self.path, device, self.inference_precision)

    def _compile(self, batch: int | None) -> Any:
        """Compile (once) the model for a static ``batch``, or the dynamic model for ``None``."""
        if batch in self._buckets:
            return self._buckets[batch][0]
        model = self._model
        h, w = self.manifest.input.shape[2:]
        try:
            if batch is not None:
                model = model.clone()
                model.reshape({model.inputs[0].get_any_name(): [batch, 3, int(h), int(w)]})
            with native_threads_started() as spawned:
                compiled = self._core.compile_model(model, self.device, self._config)
            self.worker_threads |= spawned
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own (shape checks too)
            shape = "a dynamic batch" if batch is None else f"batch {batch}"
            raise BackendError(
                f"OpenVINO could not compile {self.path} for {self.device} ({shape}, input N x 3 x {h} x {w} "
                f"as the manifest states; the graph's input is {_dims(self._model.inputs[0])}) with "
                f"{self._config or 'default settings'}: {_first_line(exc)}"
            ) from exc
        self._buckets[batch] = (compiled, compiled.create_infer_request())
        return compiled

    def _read_precision(self) -> str:
        try:
            value = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        except Exception:  # not every device plugin reports it
            return self.precision_hint or "device default"
        return str(value.get_type_name()) if hasattr(value, "get_type_name") else str(value)

    def describe(self) -> str:
        hint = self.precision_hint or "device default"
        shapes = f"static batches {list(self.batch_buckets)}" if self.batch_buckets else "dynamic batch"
        return f"openvino ({self.device}, precision hint {hint}, runs {self.inference_precision}, {shapes})"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._request is None:
            raise BackendError("this backend was closed")
        if batch.ndim != 4 or not 1 <= len(batch) <= self.max_batch:
            raise BackendError(
                f"batch must be N x C x H x W with 1 <= N <= {self.max_batch}, got {batch.shape}"
            )
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.batch_buckets is None:
            return self._infer(None, batch)
        parts, start = [], 0
        for size in split_into_buckets(len(batch), self.batch_buckets):
            parts.append(self._infer(size, batch[start : start + size]))
            start += size
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts], axis=0) for name in self._outputs}

    def _infer(self, bucket: int | None, batch: np.ndarray) -> dict[str, np.ndarray]:
        compiled = self._compile(bucket)
        request = self._buckets[bucket][1]
        try:
            if bucket in self._ran:
                values = request.infer({0: batch})
            else:  # the CPU plugin may start its threads at a shape's first inference
                with native_threads_started() as spawned:
                    values = request.infer({0: batch})
                self.worker_threads |= spawned
                self._ran.add(bucket)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own (shape checks too)
            raise BackendError(
                f"OpenVINO could not run {self.path} on a batch of shape {list(batch.shape)}; the model "
                f"expects {_dims(compiled.inputs[0])} (batch up to {self.max_batch}): {_first_line(exc)}"
            ) from exc
        self._last = request
        return {
            name: np.array(values[port]) for name, port in zip(self._outputs, compiled.outputs, strict=True)
        }

    def op_profile(self, by: str = "type") -> dict[str, float]:
        """Milliseconds of the last inference per operation type (or per node), largest first.

        OpenVINO's own per-node counters (``profile=True``), after its fusions, so they say what
        the CPU plugin actually ran. ``by="type"`` sums them by node type (``FullyConnected``,
        ``Subgraph``, ``RoPE``, ...); ``by="node"`` keeps one entry per node, keyed
        ``"type:node name"`` (the name of the original layer a fused node stands for).

        Raises:
            BackendError: The backend was created without ``profile=True``, or has not run yet.
            ConfigError: ``by`` is neither ``"type"`` nor ``"node"``.
        """
        if by not in ("type", "node"):
            raise ConfigError(f"op_profile(by=...) must be 'type' or 'node', got {by!r}")
        if not self._config.get("PERF_COUNT"):
            raise BackendError("op_profile() needs OpenVinoBackend(..., profile=True)")
        if self._last is None:
            raise BackendError("op_profile(): nothing has run yet")
        totals: dict[str, float] = {}
        for node in self._last.get_profiling_info():
            if str(node.status).endswith(".EXECUTED"):
                key = node.node_type if by == "type" else f"{node.node_type}:{node.node_name}"
                totals[key] = totals.get(key, 0.0) + node.real_time.total_seconds() * 1e3
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def close(self) -> None:
        self._last = None
        self._request = None
        self._compiled = None
        self._buckets = {}
