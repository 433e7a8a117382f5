"""FP16 ONNX (input of TensorRT 11 fp16 engines): fp32 I/O, LayerNorm and Softmax in fp32; runs on ORT CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from facesdk.bench import wilson_lower_bound
from facesdk.contract.export_manifest import load_export_manifest
from facesdk.export.fp16 import check_fp16_graph, fp32_kept_ops
from facesdk.export.onnx_export import ort_session


def test_fp16_graph_types(exports: dict[str, Path]) -> None:
    path = exports["dora"] / "model.fp16.onnx"
    model = onnx.load(str(path))
    io = [*model.graph.input, *model.graph.output]
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert fp32_kept_ops(path) == {"LayerNormalization": True, "Softmax": True}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    weights = {i.name: i.data_type for i in model.graph.initializer}
    assert any(weights.get(n.input[1]) == onnx.TensorProto.FLOAT16 for n in matmuls)
    check_fp16_graph(path)


def test_fp16_runs_on_ort_cpu_and_agrees(exports: dict[str, Path]) -> None:
    directory = exports["dora"]
    x = np.random.default_rng(1).standard_normal((8, 3, 64, 64)).astype(np.float32)
    ref = ort_session(directory / "model.onnx").run(None, {"input": x})
    got = ort_session(directory / "model.fp16.onnx").run(None, {"input": x})
    for a, b in zip(ref, got, strict=True):
        assert b.dtype == np.float32
        assert np.abs(a - b).max() < 1e-2
    parity = load_export_manifest(directory).parity["onnx-fp16"]
    assert all(t["top1_agreement"] >= 0.95 for t in parity["tasks"].values())
    # measured on face crops, and the record says which and how many (no --calib: lfw_subset's 100 faces)
    assert "lfw_subset" in parity["inputs"] and parity["crops"] == 100
    for task in parity["tasks"].values():
        assert task["crops"] == 100 and task["wilson_lower_95"] == pytest.approx(
            wilson_lower_bound(task["agree"], 100)
        )
