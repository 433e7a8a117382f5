"""Resolve what ``Analyzer(model, backend=...)`` names into a manifest, a backend kind and a file.

``model`` may be an export directory (``export.json``), a lone ``.onnx`` file (its manifest
is read from the ONNX metadata), an ``.engine`` file (needs ``export.json`` beside it) or, for
``backend="torch"``, a training checkpoint directory (``checkpoint.json``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contract.checkpoint import CHECKPOINT_MANIFEST, load_checkpoint_manifest
from .contract.export_manifest import (
    EXPORT_MANIFEST,
    ExportManifest,
    TensorSpec,
    load_export_manifest,
    manifest_from_onnx_metadata,
)
from .contract.integrity import ONNX_DIGEST_KEY, check_onnx_digest, read_onnx_metadata
from .errors import ConfigError, ManifestError, MissingFileError, require

__all__ = ["BACKEND_KINDS", "ResolvedModel", "gpu_available", "ort_cuda_available", "resolve_model"]

logger = logging.getLogger(__name__)

BACKEND_KINDS = ("auto", "onnxruntime", "openvino", "tensorrt", "torch")
ENGINE_ORDER = ("engine-fp16", "engine-int8", "engine-fp32")
ONNX_ORDER = ("onnx-fp32", "onnx-int8", "onnx-fp16")


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model ready to hand to :func:`facesdk.backends.create_backend`.

    ``options`` are backend options that ``auto`` chose (OpenVINO precision, batch buckets);
    ``reason`` says why it chose this backend.
    """

    manifest: ExportManifest
    backend: str
    path: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""


def gpu_available() -> bool:
    """True when TensorRT and cuda-python import and a CUDA device is present."""
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception:  # a driver problem is "no GPU" here
        return False
    return int(err) == 0 and count > 0


def ort_cuda_available() -> bool:
    """True when ONNX Runtime offers the CUDA execution provider."""
    ort = require("onnxruntime", "", "running ONNX models")
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _pick(manifest: ExportManifest, order: tuple[str, ...], precision: str | None, fmt: str) -> str | None:
    if precision is not None:
        key = ExportManifest.model_key(fmt, precision)
        return key if key in manifest.models else None
    return next((k for k in order if k in manifest.models), None)


def _from_export_dir(
    directory: Path, backend: str, precision: str | None, verify: bool, auto_select: bool = True
) -> ResolvedModel:
    manifest = load_export_manifest(directory, verify=verify)
    engine = _pick(manifest, ENGINE_ORDER, precision, "engine")
    onnx = _pick(manifest, ONNX_ORDER, precision, "onnx")
    if backend == "auto":
        backend = "tensorrt" if engine is not None and gpu_available() else "onnxruntime"
        cuda = backend == "onnxruntime" and ort_cuda_available()
        if backend == "onnxruntime" and not cuda and precision is None and auto_select and onnx is not None:
            from .auto.choice import choose_cpu_path  # the CPU's fastest checked path

            choice = choose_cpu_path(directory, manifest)
            return ResolvedModel(manifest, choice.backend, choice.file, choice.options, choice.reason)
        logger.info("backend auto: chose %s%s", backend, " (CUDA execution provider)" if cuda else "")
    key = engine if backend == "tensorrt" else onnx
    if backend == "torch":
        raise ConfigError("backend 'torch' runs a checkpoint directory, not an export directory")
    if key is None:
        fmt = "engine" if backend == "tensorrt" else "onnx"
        manifest.model(fmt, precision or "fp32")  # raises MissingFileError listing what exists
        raise MissingFileError(f"{directory} has no {fmt} model")
    return ResolvedModel(manifest, backend, directory / manifest.models[key].file.path)


def _from_onnx(path: Path, backend: str, verify: bool) -> ResolvedModel:
    if backend not in ("auto", "onnxruntime", "openvino"):
        raise ConfigError(
            f"a lone .onnx file runs on backend 'onnxruntime' or 'openvino' (or 'auto'), not {backend!r}"
        )
    # Verified and described before any runtime parses the graph (facesdk.contract.integrity).
    if verify and check_onnx_digest(path) is None:
        logger.warning(
            "%s carries no '%s' digest (not written by this facesdk's export): using it unverified",
            path,
            ONNX_DIGEST_KEY,
        )
    metadata = read_onnx_metadata(path)
    kind = "openvino" if backend == "openvino" else "onnxruntime"
    return ResolvedModel(manifest_from_onnx_metadata(metadata, str(path)), kind, path)


def _from_checkpoint(directory: Path, max_batch: int) -> ResolvedModel:
    ckpt = load_checkpoint_manifest(directory)
    h, w = ckpt.preprocess.input_size
    manifest = ExportManifest(
        tasks=ckpt.tasks,
        preprocess=ckpt.preprocess,
        input=TensorSpec("input", ("batch", 3, h, w)),
        outputs=tuple(TensorSpec(t.name, ("batch", t.num_classes)) for t in ckpt.tasks),
        batch=(1, max_batch),
        opset=0,
        temperatures=ckpt.temperatures,
    )
    return ResolvedModel(manifest, "torch", directory)


def resolve_model(
    model: str | os.PathLike[str],
    backend: str = "auto",
    precision: str | None = None,
    verify: bool = True,
    max_batch: int = 32,
    auto_select: bool = True,
) -> ResolvedModel:
    """Find the manifest and model file for ``model`` and settle the backend kind.

    Args:
        model: Export directory, ``.onnx`` file, ``.engine`` file or (torch) checkpoint dir.
        backend: ``"auto"``, ``"onnxruntime"``, ``"openvino"``, ``"tensorrt"`` or ``"torch"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` to choose among an export's models.
        verify: Check model files' sha256 against the manifest (a lone ``.onnx``: against the
            digest it carries).
        max_batch: Max batch for checkpoint directories (exports carry their own).
        auto_select: With ``backend="auto"``, no precision and no GPU, choose the CPU's fastest path
            checked against FP32 (:mod:`facesdk.auto.choice`); False keeps ONNX Runtime FP32.
    """
    if backend not in BACKEND_KINDS:
        raise ConfigError(f"backend must be one of {BACKEND_KINDS}, got {backend!r}")
    path = Path(model).expanduser()
    if not path.exists():
        raise MissingFileError(
            f"model {path} does not exist: expected an export directory, .onnx or .engine file"
        )
    if path.is_dir():
        if (path / EXPORT_MANIFEST).is_file():
            return _from_export_dir(path, backend, precision, verify, auto_select)
        if (path / CHECKPOINT_MANIFEST).is_file():
            if backend != "torch":
                raise ConfigError(
                    f"{path} is a training checkpoint; run it with backend='torch' or export it first"
                )
            return _from_checkpoint(path, max_batch)
        raise ManifestError(f"{path} holds neither {EXPORT_MANIFEST} nor {CHECKPOINT_MANIFEST}")
    if path.suffix == ".onnx":
        return _from_onnx(path, backend, verify)
    if path.suffix in (".engine", ".plan"):
        if backend not in ("auto", "tensorrt"):
            raise ConfigError(f"an engine file runs on backend 'tensorrt', not {backend!r}")
        manifest = load_export_manifest(path.parent, verify=verify)
        return ResolvedModel(manifest, "tensorrt", path)
    raise ConfigError(f"cannot tell what {path} is: expected an export directory, .onnx or .engine file")
