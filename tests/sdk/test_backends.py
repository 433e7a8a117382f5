from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from facesdk.backends import Backend, create_backend, register_backend, run_batched
from facesdk.backends.base import check_io
from facesdk.backends.tensorrt import check_engine_compat, engine_entry, parse_compute_capability
from facesdk.contract.export_manifest import ModelEntry, load_export_manifest
from facesdk.contract.manifest_io import FileEntry
from facesdk.errors import BackendError, ConfigError, ManifestError
from facesdk.testing import tiny_manifest


class CountingBackend:
    name = "counting"

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.calls: list[int] = []

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        assert 1 <= len(batch) <= self.max_batch
        self.calls.append(len(batch))
        return {"age": batch[:, 0, 0, :2].copy()}

    def close(self) -> None:
        pass


def test_run_batched_splits_at_max_batch_and_keeps_order() -> None:
    backend = CountingBackend(max_batch=8)
    assert isinstance(backend, Backend)
    batch = np.arange(100, dtype=np.float32)[:, None, None, None] * np.ones((1, 3, 4, 4), np.float32)
    out = run_batched(backend, batch)
    assert backend.calls == [8] * 12 + [4]
    np.testing.assert_array_equal(out["age"][:, 0], np.arange(100))
    assert run_batched(backend, batch[:0]) == {}


def test_onnxruntime_backend_runs_and_checks_batch(tiny_export: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    with create_backend("onnxruntime", manifest, tiny_export / "model.onnx", intra_op_threads=1) as backend:
        out = backend.run(np.zeros((3, 3, 32, 32), np.float32))
        assert {k: v.shape for k, v in out.items()} == {"age": (3, 9), "gender": (3, 2), "emotion": (3, 7)}
        with pytest.raises(BackendError, match="1 <= N <= 8"):
            backend.run(np.zeros((9, 3, 32, 32), np.float32))
    with pytest.raises(BackendError, match="closed"):
        backend.run(np.zeros((1, 3, 32, 32), np.float32))


def test_onnxruntime_sessions_do_not_spin_between_calls(tiny_export: Path) -> None:
    """Idle ORT threads that spin take the cores the detector needs between two backbone calls."""
    from facesdk.backends.onnxruntime import create_session

    session = create_session(tiny_export / "model.onnx", ["CPUExecutionProvider"], intra_op_threads=2)
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_onnxruntime_sessions_plan_no_memory_pattern(tiny_export: Path) -> None:
    """A memory pattern per batch size kept ~110 MiB more resident on the edge export
    (docs/benchmarks/memory.md): the backend's session and create_session's leave it off, and
    an explicit option still turns it on."""
    from facesdk.backends.onnxruntime import create_session

    manifest = load_export_manifest(tiny_export)
    with create_backend("onnxruntime", manifest, tiny_export / "model.onnx", intra_op_threads=1) as backend:
        assert backend._session.get_session_options().enable_mem_pattern is False
    session = create_session(tiny_export / "model.onnx", ["CPUExecutionProvider"])
    assert session.get_session_options().enable_mem_pattern is False
    session = create_session(
        tiny_export / "model.onnx", ["CPUExecutionProvider"], extra_options={"enable_mem_pattern": True}
    )
    assert session.get_session_options().enable_mem_pattern is True


def test_onnxruntime_backend_refuses_a_model_that_does_not_match(tiny_export: Path) -> None:
    wrong = tiny_manifest(size=64)
    with pytest.raises(BackendError, match="shape"):
        create_backend("onnxruntime", wrong, tiny_export / "model.onnx")


def test_check_io_names_missing_outputs() -> None:
    manifest = tiny_manifest()
    with pytest.raises(BackendError, match="lacks output 'emotion'"):
        check_io("m", manifest, {"input": ["batch", 3, 32, 32]}, {"age": [-1, 9], "gender": [-1, 2]})
    with pytest.raises(BackendError, match="inputs"):
        check_io("m", manifest, {"images": [1, 3, 32, 32]}, {})


def test_registry_unknown_kind_and_custom_factory() -> None:
    with pytest.raises(ConfigError, match="unknown backend"):
        create_backend("nope", tiny_manifest(), "x")
    register_backend("counting-test", lambda manifest, path, **_: CountingBackend(manifest.max_batch))
    assert create_backend("counting-test", tiny_manifest(max_batch=4), "x").max_batch == 4


RECORD = {"version": "10.13.0.35", "compute_capability": "8.9", "gpu": "NVIDIA L4"}


def test_engine_compat_accepts_same_version_and_gpu() -> None:
    check_engine_compat(RECORD, "10.13.0.35", (8, 9), "m.engine")


@pytest.mark.parametrize(
    ("version", "cc", "match"),
    [("10.14.1", (8, 9), "built with TensorRT 10.13.0.35"), ("10.13.0.35", (9, 0), "compute capability 8.9")],
)
def test_engine_compat_refuses_other_version_or_gpu(version: str, cc: tuple[int, int], match: str) -> None:
    with pytest.raises(BackendError, match=match) as info:
        check_engine_compat(RECORD, version, cc, "m.engine")
    assert "rebuild" in str(info.value)


def test_engine_compat_refuses_missing_record() -> None:
    with pytest.raises(BackendError, match="records no TensorRT"):
        check_engine_compat(None, "10.0", (8, 9), "m.engine")
    with pytest.raises(BackendError, match="needs 'version'"):
        check_engine_compat({"gpu": "x"}, "10.0", (8, 9), "m.engine")


def test_parse_compute_capability_forms() -> None:
    assert parse_compute_capability("8.6") == parse_compute_capability([8, 6]) == (8, 6)
    assert parse_compute_capability({"major": 9, "minor": 0}) == (9, 0)
    with pytest.raises(ManifestError):
        parse_compute_capability("eight")


def test_engine_entry_finds_the_file_by_name() -> None:
    entry = ModelEntry(FileEntry("model_fp16.engine", "0" * 64, 1), "engine", "fp16", tensorrt=RECORD)
    manifest = tiny_manifest(models={"engine-fp16": entry})
    assert engine_entry(manifest, "/x/model_fp16.engine") is entry
    with pytest.raises(ManifestError):
        engine_entry(manifest, "/x/other.engine")


def _has_cuda() -> bool:
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("cuda") is None:
        return False
    from facesdk.model_loader import gpu_available

    return gpu_available()


def _build_engine(onnx_path: Path, engine_path: Path, max_batch: int) -> None:  # pragma: no cover - GPU only
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [parser.get_error(i) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 32, 32), (max_batch, 3, 32, 32), (max_batch, 3, 32, 32))
    config.add_optimization_profile(profile)
    engine_path.write_bytes(bytes(builder.build_serialized_network(network, config)))


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs tensorrt, cuda-python and a CUDA GPU")
def test_tensorrt_backend_matches_onnxruntime(tmp_path: Path) -> None:  # pragma: no cover - GPU only
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    from facesdk.testing import make_tiny_export

    manifest = make_tiny_export(tmp_path, max_batch=8)
    _build_engine(tmp_path / "model.onnx", tmp_path / "model_fp32.engine", 8)
    _, props = cudart.cudaGetDeviceProperties(0)
    record = {"version": trt.__version__, "compute_capability": f"{props.major}.{props.minor}", "gpu": "test"}
    entry = ModelEntry(FileEntry.of(tmp_path, "model_fp32.engine"), "engine", "fp32", tensorrt=record)
    manifest = tiny_manifest(max_batch=8, models={**manifest.models, "engine-fp32": entry})
    manifest.write(tmp_path)
    batch = np.random.default_rng(0).normal(size=(20, 3, 32, 32)).astype(np.float32)
    with create_backend("tensorrt", manifest, tmp_path / "model_fp32.engine") as trt_backend:
        got = run_batched(trt_backend, batch)
    with create_backend("onnxruntime", manifest, tmp_path / "model.onnx") as ort_backend:
        want = run_batched(ort_backend, batch)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-3, rtol=1e-3)
