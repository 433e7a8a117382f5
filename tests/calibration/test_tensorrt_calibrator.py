"""TensorRT calibration cache keys: a stale cache is refused. The TensorRT part needs a GPU."""

from __future__ import annotations

import importlib.util

import pytest

from facesdk.calibration.tensorrt_calibrator import CacheKey, CalibrationCache, StaleCalibrationCacheError
from facesdk.errors import IntegrityError

KEY = CacheKey("a" * 64, "b" * 64, "10.9.0")


def test_cache_round_trip(tmp_path):
    cache = CalibrationCache(tmp_path / "trt.cache", KEY)
    assert cache.read() is None
    cache.write(b"TRT-10 calibration table")
    assert CalibrationCache(tmp_path / "trt.cache", KEY).read() == b"TRT-10 calibration table"


@pytest.mark.parametrize("field", ["onnx_sha256", "preprocess_fingerprint", "tensorrt_version"])
def test_stale_cache_is_refused(tmp_path, field):
    CalibrationCache(tmp_path / "trt.cache", KEY).write(b"table")
    other = CacheKey(**{**{f: getattr(KEY, f) for f in KEY.__slots__}, field: "changed"})
    assert other.digest != KEY.digest
    with pytest.raises(StaleCalibrationCacheError, match=field):
        CalibrationCache(tmp_path / "trt.cache", other).read()


def test_cache_without_key_or_tampered_is_refused(tmp_path):
    (tmp_path / "orphan.cache").write_bytes(b"table")
    with pytest.raises(StaleCalibrationCacheError, match="origin"):
        CalibrationCache(tmp_path / "orphan.cache", KEY).read()
    cache = CalibrationCache(tmp_path / "trt.cache", KEY)
    cache.write(b"table")
    cache.path.write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        cache.read()


@pytest.mark.gpu
@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed (needs a GPU)"
)
def test_entropy_calibrator_feeds_batches(
    tiny_onnx, calib_dir, spec, tmp_path
):  # pragma: no cover - GPU only
    from facesdk.calibration.tensorrt_calibrator import make_entropy_calibrator

    calibrator = make_entropy_calibrator(tiny_onnx, calib_dir, spec, tmp_path / "trt.cache", batch_size=8)
    assert calibrator.get_batch_size() == 8
    assert len(calibrator.get_batch(["input"])) == 1
