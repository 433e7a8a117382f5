"""TensorRT 10's legacy implicit INT8 path: an entropy calibrator over the calibration shards.

TensorRT 11 builds INT8 engines from the explicit Q/DQ ``model.int8.onnx`` (no calibrator).
For TensorRT 10 without Q/DQ, :func:`make_entropy_calibrator` returns a real
``tensorrt.IInt8EntropyCalibrator2`` that feeds the shards through device buffers allocated
with ``cuda.bindings`` (cuda-python). Its cache is keyed by the ONNX file's sha256, the
preprocessing fingerprint and the TensorRT version; a cache written for another key is refused
(:class:`StaleCalibrationCacheError`), never reused. The key logic needs neither TensorRT nor
a GPU and is unit-tested everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.contract.manifest_io import atomic_write_bytes, atomic_write_json, sha256_file
from facesdk.errors import IntegrityError, ManifestError, require

from .calibset import check_fingerprint, load_calibration_set

__all__ = ["CacheKey", "CalibrationCache", "StaleCalibrationCacheError", "make_entropy_calibrator"]

log = logging.getLogger(__name__)


class StaleCalibrationCacheError(ManifestError):
    """A TensorRT calibration cache was written for another model, preprocessing or TensorRT."""


@dataclass(frozen=True, slots=True)
class CacheKey:
    """What a TensorRT calibration cache is valid for."""

    onnx_sha256: str
    preprocess_fingerprint: str
    tensorrt_version: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    @classmethod
    def for_model(
        cls, onnx_path: str | os.PathLike[str], fingerprint: str, tensorrt_version: str
    ) -> CacheKey:
        return cls(sha256_file(onnx_path), fingerprint, tensorrt_version)


class CalibrationCache:
    """A cache file (TensorRT's bytes, untouched) plus a JSON sidecar with its key and hash.

    Args:
        path: The cache file, e.g. ``calib/trt-int8.cache``; the sidecar is ``<path>.json``.
        key: The key the current build needs.
    """

    def __init__(self, path: str | os.PathLike[str], key: CacheKey) -> None:
        self.path = Path(path)
        self.sidecar = self.path.with_name(self.path.name + ".json")
        self.key = key

    def read(self) -> bytes | None:
        """The cached bytes if present and written for this key; ``None`` if there is no cache.

        Raises:
            StaleCalibrationCacheError: The cache was written for another key (or has no sidecar).
            IntegrityError: The cache bytes differ from what the sidecar records.
        """
        if not self.path.is_file():
            return None
        if not self.sidecar.is_file():
            raise StaleCalibrationCacheError(
                f"{self.path} has no key file {self.sidecar.name}; its origin is unknown. Delete it to recalibrate"
            )
        meta = json.loads(self.sidecar.read_text())
        found = meta.get("key", {})
        if found != asdict(self.key):
            diff = {k: (found.get(k), v) for k, v in asdict(self.key).items() if found.get(k) != v}
            raise StaleCalibrationCacheError(
                f"TensorRT calibration cache {self.path} is stale: (found, expected) {diff}. Delete it "
                "(or pass another cache path) to recalibrate; a stale cache is never reused"
            )
        data = self.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise IntegrityError(f"{self.path} differs from the sha256 in {self.sidecar.name}; delete both")
        return data

    def write(self, data: bytes) -> None:
        """Write the bytes, then the sidecar (both atomically)."""
        atomic_write_bytes(self.path, bytes(data))
        atomic_write_json(
            self.sidecar,
            {
                "key": asdict(self.key),
                "digest": self.key.digest,
                "sha256": hashlib.sha256(bytes(data)).hexdigest(),
            },
        )


def _cuda_check(result: Any, what: str) -> Any:
    err, *rest = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA {what} failed with error {err}")
    return rest[0] if rest else None


def make_entropy_calibrator(
    onnx_path: str | os.PathLike[str],
    calib_dir: str | os.PathLike[str],
    preprocess: Any,
    cache_path: str | os.PathLike[str],
    batch_size: int = 8,
) -> Any:
    """Build a ``tensorrt.IInt8EntropyCalibrator2`` over a calibration set (TensorRT 10 path).

    Args:
        onnx_path: The FP32 ONNX the engine is built from (its sha256 keys the cache).
        calib_dir: A complete calibration set whose fingerprint matches ``preprocess``.
        preprocess: The model's :class:`facesdk.preprocess.Preprocess`.
        cache_path: Where TensorRT's calibration cache lives (checked before the build starts).
        batch_size: Crops per calibration batch.
    """
    require("tensorrt", "tensorrt", "TensorRT INT8 calibration")  # names the extra when missing
    import tensorrt as trt  # statically typed: tests/typecheck checks these names against the stubs

    cudart = require("cuda.bindings.runtime", "tensorrt", "TensorRT INT8 calibration buffers")
    calib = load_calibration_set(calib_dir)
    check_fingerprint(calib, preprocess, calib_dir)
    cache = CalibrationCache(cache_path, CacheKey.for_model(onnx_path, calib.fingerprint, trt.__version__))
    cached = cache.read()  # refuse a stale cache now, before TensorRT asks for it

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds the calibration shards batch by batch from one device buffer."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._crops, _ = calib.arrays(calib_dir)
            self._pos = 0
            nbytes = batch_size * int(np.prod(self._crops.shape[1:])) * 4
            self._device = _cuda_check(cudart.cudaMalloc(nbytes), "cudaMalloc")

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self._pos + batch_size > len(self._crops):
                return None
            host = np.ascontiguousarray(self._crops[self._pos : self._pos + batch_size], dtype=np.float32)
            self._pos += batch_size
            kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            _cuda_check(cudart.cudaMemcpy(self._device, host.ctypes.data, host.nbytes, kind), "cudaMemcpy")
            return [int(self._device)] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            return cached

        def write_calibration_cache(self, data: Any) -> None:
            cache.write(bytes(data))
            log.info("wrote TensorRT calibration cache %s", cache.path)

        def free(self) -> None:
            if self._device is not None:
                _cuda_check(cudart.cudaFree(self._device), "cudaFree")
                self._device = None

        def __del__(self) -> None:
            with contextlib.suppress(Exception):  # interpreter shutdown: the CUDA runtime may be gone
                self.free()

    return EntropyCalibrator()
