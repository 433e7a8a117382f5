"""The ONNX graph: names, dynamic batch, parity with torch, metadata, opset range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facesdk.contract.export_manifest import load_export_manifest, manifest_from_onnx_metadata
from facesdk.errors import ConfigError
from facesdk.export.merge import merge_adapters
from facesdk.export.onnx_export import (
    ONNX_TOLERANCE,
    check_onnx,
    check_opset,
    disable_fused_attn,
    ort_session,
    read_metadata,
)
from facesdk.export.pipeline import load_for_export

MAX_BATCH = 8  # the max batch of the `exports` fixture (conftest.py)


def test_parity_recorded(exports: dict[str, Path], method: str) -> None:
    manifest = load_export_manifest(exports[method])
    merge = manifest.parity["merge"]
    onnx = manifest.parity["onnx_vs_torch"]
    assert merge["max_abs_diff"] <= 1e-4 and merge["tolerance"] == 1e-4
    assert onnx["max_abs_diff"] <= ONNX_TOLERANCE
    assert set(onnx["per_batch"]) == {"1", "7", str(MAX_BATCH)}


def test_graph_io_and_checker(exports: dict[str, Path], method: str) -> None:
    path = exports[method] / "model.onnx"
    check_onnx(path, ["age", "gender", "emotion"], 18)  # onnx.checker full_check + names + dynamic batch
    session = ort_session(path)
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["age", "gender", "emotion"]


@pytest.fixture(scope="module")
def merged_dora(checkpoints: dict[str, Path]) -> torch.nn.Module:
    model, _ = load_for_export(checkpoints["dora"])
    return merge_adapters(model)


@pytest.mark.parametrize("batch", [1, 7, MAX_BATCH])
def test_dynamic_batch_matches_torch(
    merged_dora: torch.nn.Module, exports: dict[str, Path], batch: int
) -> None:
    x = torch.randn(batch, 3, 64, 64)
    with torch.inference_mode():
        ref = merged_dora(x)
    got = ort_session(exports["dora"] / "model.onnx").run(None, {"input": x.numpy()})
    for name, value in zip(["age", "gender", "emotion"], got, strict=True):
        assert value.shape == (batch, ref[name].shape[1])
        assert np.abs(value - ref[name].numpy()).max() <= ONNX_TOLERANCE


def test_metadata_round_trip(exports: dict[str, Path]) -> None:
    directory = exports["lora"]
    manifest = load_export_manifest(directory)
    lone = manifest_from_onnx_metadata(read_metadata(directory / "model.onnx"), "model.onnx")
    assert lone.tasks == manifest.tasks
    assert lone.preprocess == manifest.preprocess
    assert lone.input == manifest.input and lone.outputs == manifest.outputs
    assert lone.batch == manifest.batch and lone.opset == manifest.opset
    assert lone.complexity == manifest.complexity
    fp16 = manifest_from_onnx_metadata(read_metadata(directory / "model.fp16.onnx"), "model.fp16.onnx")
    assert fp16.tasks == manifest.tasks


@pytest.mark.parametrize("opset", [11, 17, 21, 23])
def test_opset_outside_range_refused(opset: int) -> None:
    with pytest.raises(ConfigError, match="opset"):
        check_opset(opset)


@pytest.mark.parametrize("opset", [18, 19, 20])
def test_opset_in_range_accepted(opset: int) -> None:
    assert check_opset(opset) == opset


def test_fused_attention_switched_off(checkpoints: dict[str, Path]) -> None:
    model, _ = load_for_export(checkpoints["lora"])
    attn = [m for m in model.modules() if hasattr(m, "fused_attn")]
    assert attn
    for module in attn:
        module.fused_attn = True
    assert disable_fused_attn(model) == len(attn)
    assert all(m.fused_attn is False for m in attn)


@pytest.mark.slow
def test_dynamo_exporter_at_opset_18(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """The dynamo exporter passes the same checks (no 'Attention' ops at opset 18, parity at 1/7/max)."""
    import onnx

    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export

    out = tmp_path / "out"
    manifest = run_export(ExportOptions(ckpt=checkpoints["dora"], out=out, max_batch=8, exporter="dynamo"))
    assert manifest.parity["onnx_vs_torch"]["max_abs_diff"] <= ONNX_TOLERANCE
    assert set(manifest.parity["onnx_vs_torch"]["per_batch"]) == {"1", "7", "8"}
    assert manifest.source["exporter"] == "dynamo"
    graph = onnx.load(str(out / "model.onnx")).graph
    assert not any(n.op_type == "Attention" for n in graph.node)
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx"]  # weights inside the file
