"""TensorRT engines from ONNX (extra ``[tensorrt]``; ``tensorrt`` and ``cuda-python`` imported lazily).

Precision story (details in ``docs/export.md``):

- TensorRT 11 removed the FP16/INT8 builder flags and calibrators: every network is strongly
  typed, so an FP16 engine is built from ``model.fp16.onnx`` and an INT8 engine from the Q/DQ
  ``model.int8.onnx``.
- TensorRT 10 still has the flags; ``typing="auto"`` builds strongly typed there too (same
  ONNX, same numerics on both releases), ``typing="weak"`` uses the FP16/INT8 flags instead.

The plan is written raw (no metadata in front of it); its TensorRT version and GPU live in
``export.json``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facesdk.contract.manifest_io import atomic_write_bytes
from facesdk.errors import BackendError, ConfigError, DependencyError

from .errors import ExportError

if TYPE_CHECKING:  # type-checked against tensorrt-stubs (tests/typecheck); imported lazily at run time
    import tensorrt

__all__ = [
    "TRT_TYPINGS",
    "tensorrt_unavailable_reason",
    "import_tensorrt",
    "cuda_device_info",
    "default_timing_cache",
    "EngineFromOnnx",
    "engine_io",
    "check_engine_io",
]

log = logging.getLogger(__name__)

TRT_TYPINGS = ("auto", "strong", "weak")


def import_tensorrt() -> Any:
    """Import ``tensorrt`` or raise a :class:`DependencyError` naming the extra."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise DependencyError(
            f"TensorRT engines need the 'tensorrt' package, which is not installed ({exc}). Install it on a "
            "machine with an NVIDIA GPU: pip install 'facesdk[tensorrt]'; or pass --onnx-only to write the "
            "fp16/int8 ONNX models without engines"
        ) from exc
    return trt


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as exc:
        raise DependencyError(
            f"TensorRT engines need cuda-python for device buffers ({exc}). Install it: "
            "pip install 'facesdk[tensorrt]' (pycuda is not used: it ships no wheels)"
        ) from exc
    return cudart


def cuda_device_info(device: int = 0) -> dict[str, str]:
    """Name and compute capability (``"8.9"``) of a CUDA device, through cuda-python.

    Raises:
        BackendError: No CUDA device is visible.
    """
    cudart = _cudart()
    err, count = cudart.cudaGetDeviceCount()
    if int(getattr(err, "value", err)) != 0 or count <= device:
        raise BackendError(
            f"TensorRT engines need a CUDA device, and none is visible (cudaGetDeviceCount: {err}, {count}). "
            "Build engines on the GPU machine that will run them, or pass --onnx-only"
        )
    err, props = cudart.cudaGetDeviceProperties(device)
    if int(getattr(err, "value", err)) != 0:
        raise BackendError(f"cudaGetDeviceProperties({device}) failed: {err}")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}


def tensorrt_unavailable_reason() -> str | None:
    """Why TensorRT engines cannot be built here (``None`` when they can)."""
    try:
        import_tensorrt()
        cuda_device_info()
    except (DependencyError, BackendError) as exc:
        return str(exc)
    return None


def default_timing_cache(trt_version: str, compute_capability: str) -> Path:
    """``$FACESDK_CACHE`` (or ``~/.cache/facesdk``)``/tensorrt/timing-<version>-sm<cc>.cache``.

    A timing cache is only valid for the TensorRT release and GPU that wrote it, so the
    default file name carries both.
    """
    root = Path(os.environ.get("FACESDK_CACHE", Path.home() / ".cache" / "facesdk"))
    return root / "tensorrt" / f"timing-{trt_version}-sm{compute_capability.replace('.', '')}.cache"


@dataclass(frozen=True, slots=True)
class EngineFromOnnx:
    """A loader: stores the build settings and builds the serialized plan when called.

    Attributes:
        onnx_path: ONNX model to parse (``model.fp16.onnx`` / ``model.int8.onnx`` for strong typing).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (sets builder flags only with weak typing).
        input_name: The network input.
        input_chw: ``(3, H, W)``.
        batch: ``(min, opt, max)`` of the one optimization profile.
        workspace_bytes: Workspace memory pool limit.
        timing_cache: File to read and update (``None``: no persisted cache).
        typing: ``"auto"`` (strong where supported), ``"strong"`` or ``"weak"`` (TensorRT 10 flags).
    """

    onnx_path: Path
    precision: str
    input_name: str
    input_chw: tuple[int, int, int]
    batch: tuple[int, int, int]
    workspace_bytes: int = 2 << 30
    timing_cache: Path | None = None
    typing: str = "auto"

    def __post_init__(self) -> None:
        if self.typing not in TRT_TYPINGS:
            raise ConfigError(f"TensorRT typing must be one of {TRT_TYPINGS}, got {self.typing!r}")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise ConfigError(f"optimization profile needs 1 <= min <= opt <= max, got {self.batch}")

    def resolved_typing(self, trt: Any) -> str:
        """``"strong"`` or ``"weak"`` for this TensorRT release; refuse impossible requests."""
        has_flags = hasattr(trt.BuilderFlag, "FP16")
        has_strong = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") or not has_flags
        if self.typing == "weak" and not has_flags:
            raise ConfigError(
                f"TensorRT {trt.__version__} has no FP16/INT8 builder flags (weak typing was removed in 11); "
                "use --trt-typing strong (the default)"
            )
        if self.typing == "strong" and not has_strong:
            raise ConfigError(f"TensorRT {trt.__version__} cannot build strongly typed networks; use weak")
        if self.typing == "auto":
            return "strong" if has_strong else "weak"
        return self.typing

    def _network(
        self, builder: tensorrt.Builder, logger: tensorrt.ILogger, typing: str
    ) -> tuple[tensorrt.INetworkDefinition, tensorrt.OnnxParser]:
        import tensorrt as trt

        flags = 0
        strong_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if typing == "strong" and strong_flag is not None:
            flags |= 1 << int(strong_flag)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(self.onnx_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ExportError(f"TensorRT's ONNX parser rejected {self.onnx_path}: {errors[:3]}")
        return network, parser

    def _config(self, builder: tensorrt.Builder, typing: str) -> tensorrt.IBuilderConfig:
        import tensorrt as trt

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(self.workspace_bytes))
        if typing == "weak" and self.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
            if self.precision == "int8":
                config.set_flag(trt.BuilderFlag.INT8)  # explicit Q/DQ: the flag enables int8 kernels
        lo, opt, hi = self.batch
        profile = builder.create_optimization_profile()
        chw = tuple(self.input_chw)
        profile.set_shape(self.input_name, (lo, *chw), (opt, *chw), (hi, *chw))
        config.add_optimization_profile(profile)
        blob = self.timing_cache.read_bytes() if self.timing_cache and self.timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
        return config

    def __call__(self) -> bytes:
        """Build and return the serialized plan (and update the timing cache file)."""
        import_tensorrt()  # names the extra when tensorrt is missing
        import tensorrt as trt

        typing = self.resolved_typing(trt)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network, _parser = self._network(builder, logger, typing)
        config = self._config(builder, typing)
        log.info(
            "building %s TensorRT engine (%s typing) from %s", self.precision, typing, self.onnx_path.name
        )
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise ExportError(f"TensorRT failed to build an engine from {self.onnx_path}; see its log above")
        if self.timing_cache is not None:
            atomic_write_bytes(self.timing_cache, bytes(config.get_timing_cache().serialize()))
        return bytes(plan)


def engine_io(plan: bytes) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Deserialize a plan and return ``(inputs, outputs)`` as ``{name: shape}`` (-1 = dynamic)."""
    import_tensorrt()
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise ExportError("TensorRT could not deserialize the engine it just built")
    inputs, outputs = {}, {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = [int(d) for d in engine.get_tensor_shape(name)]
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        (inputs if is_input else outputs)[name] = shape
    return inputs, outputs


def check_engine_io(
    plan: bytes, input_name: str, input_chw: tuple[int, ...], outputs: Mapping[str, int]
) -> None:
    """Compare an engine's I/O names and shapes with the ONNX model's.

    Args:
        plan: Serialized engine.
        input_name: Expected input.
        input_chw: Expected input shape without the batch axis.
        outputs: Expected ``{output name: number of classes}``.
    """
    ins, outs = engine_io(plan)
    expected_in = {input_name: [-1, *input_chw]}
    expected_out = {name: [-1, n] for name, n in outputs.items()}
    if ins != expected_in or outs != expected_out:
        raise ExportError(
            f"engine I/O {ins} -> {outs} differ from the ONNX model's {expected_in} -> {expected_out}"
        )
