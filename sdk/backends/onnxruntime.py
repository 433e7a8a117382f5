"""ONNX Runtime backend. :func:`create_session` is the one place ORT sessions are made."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..contract.export_manifest import ExportManifest
from ..errors import BackendError, ConfigError, require
from .base import ClosingBackend, check_io
from .threads import native_threads_started, usable_cores

__all__ = [
    "OnnxFileBackend",
    "OnnxRuntimeBackend",
    "available_providers",
    "choose_providers",
    "create_session",
]

logger = logging.getLogger(__name__)

PARALLEL_CALLS_CPU = 2
"""Backbone calls a CPU-only session runs at once by default (never more than the usable cores).
One call of the edge export's backbone keeps 2 cores only 1.71 busy (its ops' parallel sections
leave gaps); a second call at the same time fills them: 1.21-1.28x the crops a second on 2 cores
of an AMD EPYC with AVX2 (docs/benchmarks/parallel_calls.md)."""

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def available_providers() -> list[str]:
    """ONNX Runtime execution providers present in this installation."""
    ort = require("onnxruntime", "", "running ONNX models")
    return list(ort.get_available_providers())


def choose_providers(prefer: Sequence[str] = ("cuda", "cpu")) -> list[str]:
    """Pick execution providers in preference order among those present; CPU is always last.

    Args:
        prefer: Short names from ``"tensorrt"``, ``"cuda"``, ``"cpu"``.
    """
    unknown = [p for p in prefer if p not in PROVIDER_NAMES]
    if unknown:
        raise ConfigError(f"unknown providers {unknown}; expected names from {sorted(PROVIDER_NAMES)}")
    present = set(available_providers())
    chosen = [PROVIDER_NAMES[p] for p in prefer if PROVIDER_NAMES[p] in present]
    if PROVIDER_NAMES["cpu"] not in chosen:
        chosen.append(PROVIDER_NAMES["cpu"])
    return chosen


def create_session(
    path: str | os.PathLike[str] | bytes,
    providers: Sequence[str] | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    optimize: bool = True,
    extra_options: Mapping[str, Any] | None = None,
) -> Any:
    """Create an ``onnxruntime.InferenceSession`` with facesdk's session options.

    Args:
        path: The ONNX file, or a serialized model (bytes).
        providers: Full ORT provider names; ``None`` picks CUDA when present, else CPU.
        intra_op_threads: Threads inside one op (``None``: ORT's default, all cores).
        inter_op_threads: Threads across ops (``None``: ORT's default).
        optimize: Full graph optimisation (``False``: none, for reading metadata or probing
            intermediate tensors as they are in the file).
        extra_options: More ``SessionOptions`` attributes, set last (benchmarks: ``enable_profiling``,
            ``profile_file_prefix``, ``optimized_model_filepath``, ``graph_optimization_level``).
    """
    ort = require("onnxruntime", "", "running ONNX models")
    source = path if isinstance(path, bytes) else str(path)
    if not isinstance(path, bytes) and not Path(path).is_file():
        raise BackendError(f"ONNX model {path} does not exist")
    name = "<serialized model>" if isinstance(path, bytes) else str(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    # ORT's idle intra-op threads spin by default. Between two backbone calls the SDK runs the
    # detector and the alignment on the same cores, and spinning threads took them away: on
    # 2 CPU threads detection of a 512 px frame went from 9 to 16 ms (docs/benchmarks/sdk.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # A memory pattern is one planned block per input shape, kept in the arena beside the blocks
    # of the other batch sizes a stream sends: on the edge export (384 px ViT) it raised the peak
    # resident memory of batches 6, 2, 1, 3, 8, 5 from 246 to 356 MiB at the same speed
    # (docs/benchmarks/memory.md). Without it the arena serves each tensor and reuses freed ones.
    options.enable_mem_pattern = False
    if intra_op_threads is not None:
        if intra_op_threads < 1:
            raise ConfigError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        options.intra_op_num_threads = int(intra_op_threads)
    if inter_op_threads is not None:
        options.inter_op_num_threads = int(inter_op_threads)
    for key, value in (extra_options or {}).items():
        if not hasattr(options, str(key)):
            raise ConfigError(f"onnxruntime.SessionOptions has no attribute {key!r}")
        setattr(options, str(key), value)
    providers = list(providers) if providers is not None else choose_providers()
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types
        raise BackendError(f"ONNX Runtime could not load {name}: {exc}") from exc
    logger.info("onnxruntime session for %s on %s", name, session.get_providers())
    return session


class OnnxFileBackend(ClosingBackend):
    """A :class:`~facesdk.backends.Backend` over an ONNX file without an export manifest (CPU).

    For the stages' checks (INT8 gate, export parity) that run a model before its manifest
    exists; it uses the same session options as :class:`OnnxRuntimeBackend`.

    Args:
        path: The ONNX file (or serialized model bytes).
        outputs: Output names to return (``None``: every output of the model).
        max_batch: Largest batch one :meth:`run` call sends.
        intra_op_threads: See :func:`create_session`.
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str] | bytes,
        outputs: Sequence[str] | None = None,
        max_batch: int = 32,
        intra_op_threads: int | None = None,
    ) -> None:
        self.path = path
        self.max_batch = int(max_batch)
        self._session = create_session(
            path, ["CPUExecutionProvider"], intra_op_threads=intra_op_threads, inter_op_threads=1
        )
        self._input = self._session.get_inputs()[0].name
        self.outputs = list(outputs) if outputs is not None else [o.name for o in self._session.get_outputs()]

    def describe(self) -> str:
        return "onnxruntime (CPUExecutionProvider)"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._session is None:
            raise BackendError("this backend was closed")
        values = self._session.run(self.outputs, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})
        return dict(zip(self.outputs, values, strict=True))

    def close(self) -> None:
        self._session = None


class OnnxRuntimeBackend(ClosingBackend):
    """Runs an exported ONNX model with ONNX Runtime.

    Args:
        manifest: The export manifest (names, shapes, max batch).
        path: The ``.onnx`` file.
        providers: ORT provider names, or ``None`` for :func:`choose_providers`.
        intra_op_threads: See :func:`create_session`.
        inter_op_threads: See :func:`create_session`.
        parallel_calls: Calls of :meth:`run` that may run at once (ONNX Runtime's sessions are
            safe to run from several threads). ``None``: :data:`PARALLEL_CALLS_CPU` (at most the
            usable cores) when the session runs on the CPU alone, else 1. ``1`` serialises calls.
    """

    name = "onnxruntime"

    def __init__(
        self,
        manifest: ExportManifest,
        path: str | os.PathLike[str],
        providers: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        parallel_calls: int | None = None,
    ) -> None:
        if parallel_calls is not None and (
            isinstance(parallel_calls, bool) or not isinstance(parallel_calls, int) or parallel_calls < 1
        ):
            raise ConfigError(f"parallel_calls must be an integer >= 1, got {parallel_calls!r}")
        self.manifest = manifest
        self.path = Path(path)
        self.max_batch = manifest.max_batch
        with native_threads_started() as spawned:
            self._session = create_session(path, providers, intra_op_threads, inter_op_threads)
        self.worker_threads = frozenset(spawned)
        """Native threads of this session's intra-op pool (a stream's classifier lowers their priority)."""
        check_io(
            str(path),
            manifest,
            {i.name: i.shape for i in self._session.get_inputs()},
            {o.name: o.shape for o in self._session.get_outputs()},
        )
        self._outputs = [o.name for o in manifest.outputs]
        self.providers: list[str] = list(self._session.get_providers())
        if parallel_calls is None:
            parallel_calls = (
                min(PARALLEL_CALLS_CPU, usable_cores()) if self.providers == ["CPUExecutionProvider"] else 1
            )
        self.parallel_calls = parallel_calls
        """Calls of :meth:`run` the engine lets run at once."""

    @property
    def preferred_batch(self) -> int | None:
        """1 on the CPU alone: a batch there costs its crops' sum (batch 8 took 7.5-7.8 times batch 1
        in FP32 on the Xeon and EPYC CPUs measured), so a stream gains nothing by batching and sends one crop per call: each estimate
        lands one crop's time after its crop, not a batch's, and the activations stay small."""
        return 1 if self.providers == ["CPUExecutionProvider"] else None

    def describe(self) -> str:
        return f"onnxruntime ({', '.join(self.providers)})"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        session = self._session  # one read: the calls of other threads may be running
        if session is None:
            raise BackendError("this backend was closed")
        if batch.ndim != 4 or not 1 <= len(batch) <= self.max_batch:
            raise BackendError(
                f"batch must be N x C x H x W with 1 <= N <= {self.max_batch}, got {batch.shape}"
            )
        values = session.run(self._outputs, {self.manifest.input.name: batch.astype(np.float32, copy=False)})
        return dict(zip(self._outputs, values, strict=True))

    def close(self) -> None:
        self._session = None
