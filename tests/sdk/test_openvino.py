"""The OpenVINO backend: parity with ONNX Runtime in FP32, device and precision checks, lazy import."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesdk.backends import create_backend
from facesdk.contract.export_manifest import load_export_manifest
from facesdk.errors import BackendError, ConfigError, DependencyError

FP32_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def ov() -> object:
    return pytest.importorskip(
        "openvino", reason="openvino is not installed (pip install 'facesdk[openvino]')"
    )


def _backends(export: Path, **opts: object) -> tuple[object, object]:
    manifest = load_export_manifest(export)
    model = export / manifest.models["onnx-fp32"].file.path
    return create_backend("openvino", manifest, model, **opts), create_backend("onnxruntime", manifest, model)


def test_fp32_logits_match_onnxruntime(ov: object, tiny_export: Path) -> None:
    vino, ort = _backends(tiny_export, precision_hint="f32")
    with vino, ort:
        assert vino.inference_precision == "f32"
        for n in (1, 5, 8):
            x = np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)
            a, b = vino.run(x), ort.run(x)
            assert set(a) == {"age", "gender", "emotion"}
            for task in a:
                np.testing.assert_allclose(a[task], b[task], atol=FP32_TOLERANCE, rtol=0)


def test_analyzer_openvino_matches_onnxruntime(
    ov: object, tiny_export: Path, yunet_path: Path, astronaut_bgr: np.ndarray
) -> None:
    from facesdk import Analyzer

    with Analyzer(tiny_export, backend="openvino", detector=yunet_path) as vino:
        assert vino.backend.describe().startswith("openvino (CPU, precision hint f32")
        got = vino.analyze(astronaut_bgr)
    with Analyzer(tiny_export, backend="onnxruntime", detector=yunet_path) as ort:
        want = ort.analyze(astronaut_bgr)
    assert len(got.faces) == len(want.faces) == 1
    for task, pred in want.faces[0].attributes.items():
        assert got.faces[0].attributes[task].label == pred.label
        for label, p in pred.probs.items():
            assert got.faces[0].attributes[task].probs[label] == pytest.approx(p, abs=FP32_TOLERANCE)


def test_missing_device_lists_available(ov: object, tiny_export: Path) -> None:
    from facesdk.backends.openvino import available_devices

    absent = next(d for d in ("NPU", "GPU", "FPGA") if not any(a.startswith(d) for a in available_devices()))
    with pytest.raises(BackendError, match=f"'{absent}' is not present.*available: CPU"):
        _backends(tiny_export, device=absent)


def test_cpu_device_loads_only_the_cpu_plugin(
    ov: Any, tiny_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing every device loads the GPU and NPU plugins (~35 MiB resident on a CPU-only machine):
    a CPU backend must not list them; a missing device still lists them to say what is there."""
    listed: list[str] = []

    class Core(ov.Core):  # type: ignore[misc, name-defined]
        @property
        def available_devices(self) -> list[str]:
            listed.append("listed")
            return list(super().available_devices)

    monkeypatch.setattr(ov, "Core", Core)
    manifest = load_export_manifest(tiny_export)
    backend = create_backend("openvino", manifest, tiny_export / manifest.models["onnx-fp32"].file.path)
    with backend:
        assert backend.run(np.zeros((1, 3, 32, 32), np.float32))["age"].shape == (1, 9)
    assert listed == []
    with pytest.raises(BackendError, match="is not present.*available: CPU"):
        create_backend("openvino", manifest, tiny_export / "model.onnx", device="NOSUCH")
    assert listed == ["listed"]


def test_bad_precision_hint_is_refused(ov: object, tiny_export: Path) -> None:
    with pytest.raises(ConfigError, match="precision_hint"):
        _backends(tiny_export, precision_hint="int4")


def test_missing_package_names_the_extra(tiny_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(DependencyError, match=r"facesdk\[openvino\]"):
        _backends(tiny_export)


def test_bench_adds_openvino_rows(ov: object) -> None:
    from facesdk.bench.cli import _openvino_rows

    base = {"batch": 1, "threads": 1, "repeats": 1}
    fp32 = _openvino_rows(base, "m.onnx", "onnx-fp32", "fp32")
    assert [r["precision_hint"] for r in fp32] == ["f32", None]
    int8 = _openvino_rows(base, "q.onnx", "onnx-int8", "int8")
    assert [r["label"] for r in int8] == ["openvino int8 (default precision)"]


def test_bucket_split_has_no_padding() -> None:
    from facesdk.backends.openvino import split_into_buckets

    assert split_into_buckets(13, (1, 2, 4, 8)) == [8, 4, 1]
    assert split_into_buckets(7, (8, 4, 2, 1)) == [4, 2, 1]
    assert split_into_buckets(8, (1, 2, 4, 8)) == [8]
    assert split_into_buckets(5, (1, 4)) == [4, 1]


def test_static_buckets_match_the_dynamic_model(ov: object, tiny_export: Path) -> None:
    """Batches above the largest bucket (here 13 > 8) are split; outputs equal the dynamic model's."""
    from dataclasses import replace

    manifest = replace(load_export_manifest(tiny_export), batch=(1, 32))
    model = tiny_export / manifest.models["onnx-fp32"].file.path
    static = create_backend("openvino", manifest, model, batch_buckets=(1, 2, 4, 8))
    dynamic = create_backend("openvino", manifest, model, batch_buckets=None)
    with static, dynamic:
        assert "static batches [1, 2, 4, 8]" in static.describe()
        assert "dynamic batch" in dynamic.describe()
        assert set(static._buckets) == {1}  # only the smallest is compiled up front
        for n in (1, 3, 8, 13):
            x = np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)
            a, b = static.run(x), dynamic.run(x)
            for task in a:
                assert a[task].shape == b[task].shape == (n, b[task].shape[1])
                np.testing.assert_allclose(a[task], b[task], atol=1e-5, rtol=0)
        assert set(static._buckets) == {1, 2, 4, 8}


def test_static_buckets_need_batch_one(ov: object, tiny_export: Path) -> None:
    with pytest.raises(ConfigError, match="must include 1"):
        _backends(tiny_export, batch_buckets=(2, 4))


def test_op_profile_sums_the_last_run_by_operation_type(ov: object, tiny_export: Path) -> None:
    """The tiny export is a pooling and linear heads: the profile names what ran, in ms."""
    manifest = load_export_manifest(tiny_export)
    with create_backend("openvino", manifest, tiny_export / "model.onnx", profile=True) as backend:
        with pytest.raises(BackendError, match="nothing has run"):
            backend.op_profile()
        backend.run(np.zeros((2, 3, *manifest.input.shape[2:]), np.float32))
        profile = backend.op_profile()
        nodes = backend.op_profile(by="node")
        with pytest.raises(ConfigError, match="'type' or 'node'"):
            backend.op_profile(by="layer")
    assert "FullyConnected" in profile and all(ms >= 0 for ms in profile.values())
    assert list(profile.values()) == sorted(profile.values(), reverse=True)
    # per node: "type:name" keys that add up to the per-type sums
    for node_type, ms in profile.items():
        mine = [v for k, v in nodes.items() if k.split(":", 1)[0] == node_type]
        assert mine and sum(mine) == pytest.approx(ms)
    with create_backend("openvino", manifest, tiny_export / "model.onnx") as plain:
        plain.run(np.zeros((1, 3, *manifest.input.shape[2:]), np.float32))
        with pytest.raises(BackendError, match="profile=True"):
            plain.op_profile()


def test_a_manifest_size_the_graph_does_not_have_is_refused(
    ov: object, tiny_export: Path, tmp_path: Path
) -> None:
    """A static reshape to the manifest's 64 px must not hide a 32 px graph (it ran and answered)."""
    import json
    import shutil

    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    data = json.loads((export / "export.json").read_text())
    data["preprocess"]["input_size"] = [64, 64]
    data["input"]["shape"] = ["batch", 3, 64, 64]
    (export / "export.json").write_text(json.dumps(data))
    manifest = load_export_manifest(export)
    with pytest.raises(BackendError, match=r"input_size of its manifest is \[64, 64\].*32, 32"):
        create_backend("openvino", manifest, export / manifest.models["onnx-fp32"].file.path)


def test_a_wrong_batch_shape_is_a_backend_error(ov: object, tiny_export: Path) -> None:
    manifest = load_export_manifest(tiny_export)
    model = tiny_export / manifest.models["onnx-fp32"].file.path
    expected = r"shape \[2, 3, 64, 64\]; the model expects \['batch', 3, 32, 32\]"
    vino = create_backend("openvino", manifest, model, batch_buckets=None)
    with vino, pytest.raises(BackendError, match=expected):
        vino.run(np.zeros((2, 3, 64, 64), np.float32))
