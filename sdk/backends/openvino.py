"""OpenVINO backend: runs the export's ONNX file on an Intel CPU, GPU or NPU.

``openvino`` is imported only when this backend is created (``[openvino]`` extra). The ONNX
file is read directly (no IR conversion step) and compiled for one device. The inference
precision is a setting the user chooses and the backend reports, never one it changes:

* ``precision_hint="f32"`` (the default) asks for float32 arithmetic, so results match
  ONNX Runtime FP32 to about 1e-5 in the logits;
* ``precision_hint=None`` keeps the device's own default (on CPUs with AVX-512 BF16 or AMX
  that is bf16, faster and less exact); :meth:`OpenVinoBackend.describe` says what was chosen.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, ConfigError, require
from ..export_manifest import ExportManifest
from .base import check_io

__all__ = ["OpenVinoBackend", "available_devices", "PRECISION_HINTS"]

logger = logging.getLogger(__name__)

PRECISION_HINTS = ("f32", "bf16", "f16")
"""Values of OpenVINO's ``INFERENCE_PRECISION_HINT`` this backend passes on (``None``: the device's default)."""

VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


def _openvino() -> Any:
    return require("openvino", "openvino", "the OpenVINO backend")


def available_devices() -> list[str]:
    """Devices OpenVINO sees on this machine (``["CPU"]``, ``["CPU", "GPU.0", "NPU"]``, ...)."""
    return list(_openvino().Core().available_devices)


def _check_device(device: str, available: list[str]) -> None:
    if device.split(":")[0] in VIRTUAL_DEVICES:
        return
    if not any(d == device or d.startswith(device + ".") for d in available):
        raise BackendError(
            f"OpenVINO device {device!r} is not present on this machine; available: "
            f"{', '.join(available) or 'none'} (or AUTO). Pass device= one of those."
        )


def _dims(port: Any) -> list[Any]:
    return [d.get_length() if d.is_static else "batch" for d in port.get_partial_shape()]


def _port_name(port: Any, wanted: set[str]) -> str:
    """The port's tensor name that the manifest uses (ONNX outputs may carry several names)."""
    names = port.get_names()
    return next((n for n in names if n in wanted), port.get_any_name())


class OpenVinoBackend:
    """Runs an exported ONNX model with OpenVINO.

    Args:
        manifest: The export manifest (names, shapes, max batch).
        path: The ``.onnx`` file (an OpenVINO ``.xml`` IR works too).
        device: ``"CPU"``, ``"GPU"``, ``"NPU"``, ``"AUTO"`` or an indexed device (``"GPU.1"``).
        precision_hint: ``"f32"`` (default), ``"bf16"``, ``"f16"`` or ``None`` for the device default.
        num_threads: CPU inference threads (``None``: OpenVINO's default).
        cache_dir: Folder for OpenVINO's compiled-model cache (speeds up GPU/NPU start-up).
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
    ) -> None:
        ov = _openvino()
        if precision_hint is not None and precision_hint not in PRECISION_HINTS:
            raise ConfigError(
                f"precision_hint must be one of {PRECISION_HINTS} or None, got {precision_hint!r}"
            )
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        self.manifest = manifest
        self.path = Path(path)
        self.max_batch = manifest.max_batch
        self.device = device
        self.precision_hint = precision_hint
        if not self.path.is_file():
            raise BackendError(f"model {self.path} does not exist")
        core = ov.Core()
        _check_device(device, list(core.available_devices))
        config: dict[str, Any] = {}
        if precision_hint is not None:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        if num_threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        try:
            self._compiled = core.compile_model(str(self.path), device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendError(
                f"OpenVINO could not compile {self.path} for {device} with {config or 'default settings'}: {exc}"
            ) from exc
        wanted = {manifest.input.name, *(o.name for o in manifest.outputs)}
        inputs = {_port_name(p, wanted): _dims(p) for p in self._compiled.inputs}
        self._outputs = [_port_name(p, wanted) for p in self._compiled.outputs]
        check_io(
            str(self.path),
            manifest,
            inputs,
            dict(zip(self._outputs, map(_dims, self._compiled.outputs), strict=True)),
        )
        self._request = self._compiled.create_infer_request()
        self.inference_precision = self._read_precision()
        logger.info("openvino %s on %s (inference precision %s)", self.path, device, self.inference_precision)

    def _read_precision(self) -> str:
        try:
            value = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        except Exception:  # not every device plugin reports it
            return self.precision_hint or "device default"
        return str(value.get_type_name()) if hasattr(value, "get_type_name") else str(value)

    def describe(self) -> str:
        hint = self.precision_hint or "device default"
        return f"openvino ({self.device}, precision hint {hint}, runs {self.inference_precision})"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._request is None:
            raise BackendError("this backend was closed")
        if batch.ndim != 4 or not 1 <= len(batch) <= self.max_batch:
            raise BackendError(
                f"batch must be N x C x H x W with 1 <= N <= {self.max_batch}, got {batch.shape}"
            )
        values = self._request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return {
            name: np.array(values[port])
            for name, port in zip(self._outputs, self._compiled.outputs, strict=True)
        }

    def close(self) -> None:
        self._request = None
        self._compiled = None

    def __enter__(self) -> OpenVinoBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
