"""Export settings and the checks that run before any work starts (bad input fails fast)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facesdk.contract.export_manifest import EXPORT_MANIFEST, PRECISIONS
from facesdk.errors import ConfigError, DependencyError, MissingFileError
from facesdk.outputs import check_output_dir

from .onnx_export import DEFAULT_OPSET, EXPORTERS, check_opset
from .rewrite import ROPE_LAYOUTS
from .tensorrt_build import TRT_TYPINGS, tensorrt_unavailable_reason

__all__ = [
    "ENGINE_MODES",
    "ExportOptions",
    "ExportPlan",
    "parse_precisions",
    "parse_key_values",
    "preflight",
    "load_quantizer",
    "QUANTIZER",
]

log = logging.getLogger(__name__)

QUANTIZER = "facesdk.calibration.quantize"
"""Module providing ``quantize_export(fp32_onnx, calib_dir, out_onnx, preprocess, tasks, **options) -> dict``."""
QUANTIZE_CONFIG = "facesdk.calibration.quantize_config"
"""Module providing ``QuantizeConfig.from_options(options)``: the typed, checked ``--int8-option`` settings."""
ENGINE_MODES = ("auto", "tensorrt", "none")
"""``--engines``: ``auto`` builds TensorRT engines for fp16/int8 where TensorRT runs and otherwise
writes only the ONNX models (one log line says so); ``tensorrt`` requires the engines (an error
on a machine without TensorRT); ``none`` never builds them (``--onnx-only``)."""


def parse_precisions(value: str | Iterable[str]) -> tuple[str, ...]:
    """Parse ``"fp32,fp16"`` (or a list) into an ordered tuple of known precisions."""
    items = value.split(",") if isinstance(value, str) else list(value)
    found = tuple(dict.fromkeys(p.strip().lower() for p in items if p.strip()))
    unknown = [p for p in found if p not in PRECISIONS]
    if unknown or not found:
        raise ConfigError(f"unknown precision(s) {unknown or [value]}; choose from {', '.join(PRECISIONS)}")
    return found


ADDING_KEYS = ("also_keep_float",)
"""``--int8-option`` keys whose repeats add to the list given before (patterns, one or a JSON list)."""


def parse_key_values(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings; values are read as JSON when they parse (``true``, ``0.95``), else kept as text.

    A key of :data:`ADDING_KEYS` given again adds its patterns to the earlier ones (in order, each
    once); any other key given twice with different values is refused, never silently replaced.
    """
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r} (e.g. --int8-option accept_drop=true)")
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if key in ADDING_KEYS:
            given = out.get(key, [])
            value = list(dict.fromkeys([*given, *([value] if isinstance(value, str) else value)]))
        elif key in out and out[key] != value:
            raise ConfigError(
                f"--int8-option {key} is given twice ({out[key]!r}, then {value!r}); give it once"
            )
        out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What ``facesdk export build`` does.

    Attributes:
        ckpt: Checkpoint directory (``checkpoint.json`` + ``model.safetensors``).
        out: Export directory to create.
        precisions: Any of ``fp32``, ``fp16``, ``int8``; ``model.onnx`` (fp32) is always written
            because every other model is made from it.
        max_batch: Largest batch of the dynamic axis (ONNX checks and TensorRT profile).
        opset: ONNX opset, 18-20.
        calib: An existing calibration set directory (``int8``; or ``calib_sources``).
        calib_sources: Photos, folders, videos or dataset CSVs to collect the calibration set
            from during the export, with the checkpoint's own preprocessing (``int8``).
        calib_count: Crops to collect from ``calib_sources``.
        keep_calib: Keep the collected set in this directory (re-running resumes it); by default
            it is removed after the export, which records its hash and collection report.
        detector: YuNet model for ``calib_sources`` (``None``: the SDK's lookup).
        force: Replace an existing ``out``.
        onnx_only: Same as ``engine_mode="none"``.
        engine_mode: One of :data:`ENGINE_MODES`.
        workspace_gb: TensorRT workspace memory pool limit.
        timing_cache: TensorRT timing cache file (``None``: the user cache directory).
        trt_typing: ``auto``, ``strong`` or ``weak`` (TensorRT 10 builder flags).
        parity_samples: Inputs for the engine-vs-ONNX Runtime agreement check.
        exporter: ``torchscript`` (default) or ``dynamo`` (both checked the same way).
        int8_options: Keyword options passed to ``quantize_export`` (e.g. ``method``, ``accept_drop``).
        rope_layout: RoPE layout of the exported graph: ``half`` (the half-rotation rewrite of
            ``facesdk.export.rewrite``, which CPU runtimes fuse), ``interleaved`` (the graph as timm
            builds it) or ``auto`` (``half`` unless TensorRT engines are built).
    """

    ckpt: Path
    out: Path
    precisions: tuple[str, ...] = ("fp32",)
    max_batch: int = 32
    opset: int = DEFAULT_OPSET
    calib: Path | None = None
    calib_sources: tuple[Path, ...] = ()
    calib_count: int = 1024
    keep_calib: Path | None = None
    detector: Path | None = None
    force: bool = False
    onnx_only: bool = False
    engine_mode: str = "auto"
    workspace_gb: float = 2.0
    timing_cache: Path | None = None
    trt_typing: str = "auto"
    parity_samples: int = 512
    exporter: str = "torchscript"
    int8_options: Mapping[str, Any] = field(default_factory=dict)
    rope_layout: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ckpt", Path(self.ckpt))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "precisions", parse_precisions(self.precisions))
        for name in ("calib", "keep_calib", "detector"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        object.__setattr__(self, "calib_sources", tuple(Path(p) for p in self.calib_sources))
        if self.engine_mode not in ENGINE_MODES:
            raise ConfigError(f"--engines must be one of {ENGINE_MODES}, got {self.engine_mode!r}")
        if self.onnx_only:
            if self.engine_mode == "tensorrt":
                raise ConfigError("--onnx-only and --engines tensorrt contradict each other; choose one")
            object.__setattr__(self, "engine_mode", "none")
        if self.calib_count < 1:
            raise ConfigError(f"--calib-count must be >= 1, got {self.calib_count}")
        check_opset(self.opset)
        if not 1 <= int(self.max_batch) <= 4096:
            raise ConfigError(f"--max-batch must be within 1..4096, got {self.max_batch}")
        if self.trt_typing not in TRT_TYPINGS:
            raise ConfigError(f"--trt-typing must be one of {TRT_TYPINGS}, got {self.trt_typing!r}")
        if self.workspace_gb <= 0:
            raise ConfigError(f"--workspace-gb must be > 0, got {self.workspace_gb}")
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"--exporter must be one of {EXPORTERS}, got {self.exporter!r}")
        if self.rope_layout not in ("auto", *ROPE_LAYOUTS):
            raise ConfigError(
                f"--rope-layout must be one of auto, {', '.join(ROPE_LAYOUTS)}; got {self.rope_layout!r}"
            )
        if self.parity_samples < 1:
            raise ConfigError(f"parity_samples must be >= 1, got {self.parity_samples}")

    @property
    def engines(self) -> tuple[str, ...]:
        """Precisions that get a TensorRT engine where TensorRT runs (see :func:`preflight`)."""
        if self.engine_mode == "none":
            return ()
        return tuple(p for p in self.precisions if p in ("fp16", "int8"))

    @property
    def batches(self) -> tuple[int, ...]:
        """Batch sizes of the ONNX-vs-torch check: 1, 7 and max (those within range)."""
        return tuple(dict.fromkeys(b for b in (1, 7, self.max_batch) if b <= self.max_batch))


def load_quantizer():  # noqa: ANN201 - returns the quantize_export callable
    """Import ``facesdk.calibration.quantize.quantize_export`` or say what is missing."""
    try:
        module = importlib.import_module(QUANTIZER)
    except ImportError as exc:
        raise DependencyError(
            f"--precision int8 needs {QUANTIZER}.quantize_export (the calibration stage), which is not "
            f"available in this install ({exc}). Export fp32/fp16 now, or install a facesdk with calibration"
        ) from exc
    func = getattr(module, "quantize_export", None)
    if not callable(func):
        raise DependencyError(
            f"{QUANTIZER} has no quantize_export(); this facesdk's calibration stage is too old"
        )
    return func


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What preflight decided: the engines to build and the checked INT8 settings."""

    engines: tuple[str, ...] = ()
    int8: Any = None
    """The ``QuantizeConfig`` of ``--int8-option`` (``None`` without int8)."""


def int8_config(options: Mapping[str, Any]) -> Any:
    """``QuantizeConfig.from_options(options)``: unknown keys and bad values fail here, before any work."""
    try:
        module = importlib.import_module(QUANTIZE_CONFIG)
    except ImportError as exc:
        raise DependencyError(
            f"--precision int8 needs the calibration stage ({QUANTIZE_CONFIG}), which is not available in "
            f"this install ({exc}). Export fp32/fp16 now, or install a facesdk with calibration"
        ) from exc
    return module.QuantizeConfig.from_options(options)


def _check_int8(options: ExportOptions) -> Any:
    """The calibration inputs and INT8 settings of an int8 export (the typed config)."""
    if options.calib is not None and options.calib_sources:
        raise ConfigError("give --calib (an existing set) or --calib-source (collect one now), not both")
    if options.calib is None and not options.calib_sources:
        raise ConfigError(
            "--precision int8 needs calibration crops: pass --calib-source PHOTOS_OR_VIDEO ... to collect "
            "them during the export, or --calib DIR for a set made by 'facesdk calibrate collect'"
        )
    if options.calib is not None and not options.calib.is_dir():
        raise MissingFileError(f"calibration directory {options.calib} does not exist")
    for source in options.calib_sources:
        if not source.exists():
            raise MissingFileError(
                f"--calib-source {source} does not exist; give image folders, images, videos or dataset CSVs"
            )
    if options.keep_calib is not None and options.keep_calib.resolve() in (
        options.out.resolve(),
        options.ckpt.resolve(),
    ):
        raise ConfigError("--keep-calib must be a directory of its own, not --out or --ckpt")
    load_quantizer()
    return int8_config(options.int8_options)


def _check_unused(options: ExportOptions) -> None:
    """Refuse INT8 settings given to an export without int8 (never silently ignored)."""
    unused = [
        flag
        for flag, value in (
            ("--calib", options.calib),
            ("--calib-source", options.calib_sources),
            ("--keep-calib", options.keep_calib),
            ("--int8-option", options.int8_options),
        )
        if value
    ]
    if unused:
        raise ConfigError(f"{', '.join(unused)} only apply to --precision int8, which was not asked for")


def _resolve_engines(options: ExportOptions) -> tuple[str, ...]:
    """The engines to build: all asked for where TensorRT runs; none (one log line) in ``auto`` mode otherwise."""
    if not options.engines:
        return ()
    reason = tensorrt_unavailable_reason()
    if reason is None:
        return options.engines
    if options.engine_mode == "tensorrt":
        raise DependencyError(f"--engines tensorrt: this machine cannot build TensorRT engines: {reason}")
    log.info(
        "TensorRT engines skipped (%s): %s; the ONNX models are written",
        ",".join(options.engines),
        reason.split(". ")[0],
    )
    return ()


def preflight(options: ExportOptions) -> ExportPlan:
    """Refuse bad requests before loading anything (each error names the cause and the fix).

    Returns:
        The plan: engines to build (``auto`` drops them, with a log line, where TensorRT cannot
        run) and the checked INT8 settings.
    """
    if not options.ckpt.is_dir():
        raise MissingFileError(
            f"checkpoint directory {options.ckpt} does not exist; pass --ckpt the directory holding "
            "checkpoint.json (a training run's 'checkpoint/' folder)"
        )
    check_output_dir(
        options.out,
        [options.ckpt, options.calib, options.timing_cache, *options.calib_sources],
        force=options.force,
        manifests=(EXPORT_MANIFEST,),
    )
    int8 = None
    if "int8" in options.precisions:
        int8 = _check_int8(options)
    else:
        _check_unused(options)
    return ExportPlan(engines=_resolve_engines(options), int8=int8)
