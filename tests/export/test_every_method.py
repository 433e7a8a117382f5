"""Every trained method exports; adapters merge within 1e-4; MTLoRA keeps one branch per task.

The checkpoints come from the session fixture ``method_runs`` (``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facesdk.contract.export_manifest import load_export_manifest
from facesdk.errors import ConfigError
from facesdk.export.merge import MERGE_TOLERANCE
from facesdk.export.onnx_export import ONNX_TOLERANCE
from facesdk.export.options import ExportOptions
from facesdk.export.pipeline import run_export
from facesdk.training import load_checkpoint
from facesdk.training.methods import get_method

TASKS = ("age", "gender", "emotion")


@pytest.fixture(scope="session")
def method_exports(method_runs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # noqa: ANN001
    """fp32 ONNX exports (max batch 4) of every mergeable method's checkpoint, by method."""
    root = tmp_path_factory.mktemp("method_exports")
    out, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # tiny graphs: one thread is fastest, and the cores are shared
    try:
        for name, run in method_runs.items():
            if get_method(name).mergeable:
                run_export(ExportOptions(ckpt=run.out / "checkpoint", out=root / name, max_batch=4))
                out[name] = root / name
    finally:
        torch.set_num_threads(threads)
    return out


def test_exports_with_merge_parity(method_exports, method_runs, trained_method: str, tmp_path: Path) -> None:  # noqa: ANN001
    ckpt = method_runs[trained_method].out / "checkpoint"
    if not get_method(trained_method).mergeable:
        with pytest.raises(ConfigError, match="cannot be merged"):
            run_export(ExportOptions(ckpt=ckpt, out=tmp_path / "out"))
        return
    manifest = load_export_manifest(method_exports[trained_method], verify=True)
    assert manifest.source["method"] == trained_method
    assert manifest.parity["merge"]["tolerance"] == MERGE_TOLERANCE
    assert manifest.parity["merge"]["max_abs_diff"] <= MERGE_TOLERANCE
    assert manifest.parity["onnx_vs_torch"]["max_abs_diff"] <= ONNX_TOLERANCE
    assert [o.name for o in manifest.outputs] == list(TASKS)
    assert manifest.complexity["unmerged"]["gflops"] >= manifest.complexity["merged"]["gflops"] > 0


def _onnx_outputs(directory: Path, x: torch.Tensor) -> dict[str, np.ndarray]:
    from facesdk.backends.onnxruntime import OnnxRuntimeBackend

    manifest = load_export_manifest(directory, verify=True)
    with OnnxRuntimeBackend(manifest, directory / manifest.model("onnx", "fp32").file.path) as backend:
        return backend.run(x.numpy())


def test_mtlora_exports_its_task_branches(method_exports, method_runs) -> None:  # noqa: ANN001
    import onnx

    directory = method_exports["mtlora"]
    graph = onnx.load(str(directory / "model.onnx")).graph
    products = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    # one merged sub-graph per task (the exporter names nodes by module scope): its own copy
    # of the last block and of the attention pool; the trunk's block appears once
    for task in TASKS:
        assert any(f"/{task}/blocks.0/attn/qkv/" in n for n in products), task
        assert any(f"/{task}/attn_pool/kv/" in n for n in products), task
    assert sum("/attn/qkv/" in n for n in products) == 1 + len(TASKS)
    names = [i.name for i in graph.initializer] + [n.name for n in graph.node]
    assert not any("lora" in n.lower() for n in names), "adapters left unmerged in the graph"

    # the exported graph gives the outputs of the unmerged, trained model (SDK backend, batch 1 and 3)
    run = method_runs["mtlora"]
    unmerged = load_checkpoint(run.out / "checkpoint")
    for x in (run.probe[:1], run.probe):
        got = _onnx_outputs(directory, x)
        with torch.no_grad():
            want = unmerged(x)
        for task in TASKS:
            assert np.abs(got[task] - want[task].numpy()).max() <= 1e-4, task

    # the branches cost more than a fully merged model of the same backbone
    cost = {m: load_export_manifest(method_exports[m]).complexity for m in ("mtlora", "dora")}
    assert cost["mtlora"]["onnx"]["gflops"] > 1.2 * cost["dora"]["onnx"]["gflops"]
