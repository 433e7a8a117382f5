"""OpenVINO agreement with FP32 recorded at export (optional manifest field ``extra.openvino_agreement``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="the [openvino] extra measures the OpenVINO paths")

from facesdk.contract.export_manifest import ModelEntry, load_export_manifest  # noqa: E402

cpu_paths = pytest.importorskip("facesdk.export.cpu_paths")

CPU = {
    "model": "Test CPU",
    "flags": ["avx2", "avx512_bf16"],
    "runtimes": {"onnxruntime": "1", "openvino": "2"},
}


def test_every_openvino_path_this_cpu_runs_gets_a_wilson_record(tiny_export: Path) -> None:
    """FP32 file: BF16 (where the CPU has it); INT8 file: f32 and BF16. Each with its Wilson bound."""
    manifest = load_export_manifest(tiny_export)
    fp32 = manifest.models["onnx-fp32"]
    as_int8 = replace(
        manifest, models={**manifest.models, "onnx-int8": ModelEntry(fp32.file, "onnx", "int8")}
    )
    h, w = manifest.preprocess.input_size
    crops = np.random.default_rng(0).standard_normal((200, 3, h, w)).astype(np.float32)
    records = cpu_paths.openvino_agreement(tiny_export, as_int8, crops, "random crops", cpu=CPU)
    assert {k: sorted(v) for k, v in records.items()} == {"onnx-fp32": ["bf16"], "onnx-int8": ["bf16", "f32"]}
    f32 = records["onnx-int8"]["f32"]  # the FP32 file through OpenVINO f32: the same arithmetic
    assert f32["samples"] == 200 and set(f32["agreement_lower_bound"]) == {"age", "gender", "emotion"}
    assert all(
        b == pytest.approx(200 / (200 + 1.959963984540054**2)) for b in f32["agreement_lower_bound"].values()
    )
    assert f32["passed"] and f32["source"] == "export"
    no_bf16 = {**CPU, "flags": ["avx2"]}
    assert {
        k: sorted(v)
        for k, v in cpu_paths.openvino_agreement(tiny_export, as_int8, crops, "x", cpu=no_bf16).items()
    } == {"onnx-int8": ["f32"]}
