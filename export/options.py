"""Export settings and the checks that run before any work starts (bad input fails fast)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facesdk.errors import ConfigError, DependencyError, MissingFileError
from facesdk.export_manifest import PRECISIONS

from .onnx_export import DEFAULT_OPSET, EXPORTERS, check_opset
from .rewrite import ROPE_LAYOUTS
from .tensorrt_build import TRT_TYPINGS, tensorrt_unavailable_reason

__all__ = [
    "ExportOptions",
    "parse_precisions",
    "parse_key_values",
    "preflight",
    "load_quantizer",
    "QUANTIZER",
]

log = logging.getLogger(__name__)

QUANTIZER = "facesdk.calibration.quantize"
"""Module providing ``quantize_export(fp32_onnx, calib_dir, out_onnx, preprocess, tasks, **options) -> dict``."""


def parse_precisions(value: str | Iterable[str]) -> tuple[str, ...]:
    """Parse ``"fp32,fp16"`` (or a list) into an ordered tuple of known precisions."""
    items = value.split(",") if isinstance(value, str) else list(value)
    found = tuple(dict.fromkeys(p.strip().lower() for p in items if p.strip()))
    unknown = [p for p in found if p not in PRECISIONS]
    if unknown or not found:
        raise ConfigError(f"unknown precision(s) {unknown or [value]}; choose from {', '.join(PRECISIONS)}")
    return found


def parse_key_values(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings; values are read as JSON when they parse (``true``, ``0.95``), else kept as text."""
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected KEY=VALUE, got {item!r} (e.g. --int8-option accept_drop=true)")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
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
        calib: Calibration set directory (needed for ``int8``).
        force: Replace an existing ``out``.
        onnx_only: Write fp16/int8 ONNX models without TensorRT engines.
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
    force: bool = False
    onnx_only: bool = False
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
        if self.calib is not None:
            object.__setattr__(self, "calib", Path(self.calib))
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
        """Precisions that get a TensorRT engine."""
        return () if self.onnx_only else tuple(p for p in self.precisions if p in ("fp16", "int8"))

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


def preflight(options: ExportOptions) -> None:
    """Refuse bad requests before loading anything (each error names the cause and the fix)."""
    if not options.ckpt.is_dir():
        raise MissingFileError(
            f"checkpoint directory {options.ckpt} does not exist; pass --ckpt the directory holding "
            "checkpoint.json (a training run's 'checkpoint/' folder)"
        )
    if options.out.exists() and not options.force:
        raise ConfigError(f"output directory {options.out} already exists; pass --force to replace it")
    if options.out.resolve() == options.ckpt.resolve():
        raise ConfigError("--out must differ from --ckpt")
    if "int8" in options.precisions:
        if options.calib is None:
            raise ConfigError(
                "--precision int8 needs a calibration set: pass --calib DIR (make one with 'facesdk calibrate collect')"
            )
        if not options.calib.is_dir():
            raise MissingFileError(f"calibration directory {options.calib} does not exist")
        load_quantizer()
    if options.engines:
        reason = tensorrt_unavailable_reason()
        if reason is not None:
            raise DependencyError(
                f"--precision {','.join(options.engines)} builds TensorRT engines, which this machine cannot: "
                f"{reason}"
            )
