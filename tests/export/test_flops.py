"""Complexity: GFLOPs (torch) of merged < unmerged; ONNX MACs x 2 agree with torch FLOPs."""

from __future__ import annotations

from pathlib import Path

from facesdk.contract.export_manifest import load_export_manifest
from facesdk.export.flops import FLOPS_REL_TOLERANCE, count_params, onnx_macs, torch_flops
from facesdk.export.merge import merge_adapters
from facesdk.export.pipeline import load_for_export


def test_merged_counts_less(checkpoints: dict[str, Path], method: str) -> None:
    model, _ = load_for_export(checkpoints[method])
    merged = merge_adapters(model)
    assert torch_flops(merged, (64, 64)) < torch_flops(model, (64, 64))
    assert count_params(merged) < count_params(model)


def test_onnx_count_agrees_with_torch(exports: dict[str, Path], method: str) -> None:
    manifest = load_export_manifest(exports[method])
    complexity = manifest.complexity
    assert complexity["merged"]["gflops"] < complexity["unmerged"]["gflops"]
    gmacs = onnx_macs(exports[method] / "model.onnx") / 1e9
    assert abs(gmacs - complexity["onnx"]["gmacs"]) < 1e-12
    torch_g = complexity["merged"]["gflops"]
    assert abs(2 * gmacs - torch_g) / torch_g <= FLOPS_REL_TOLERANCE
    assert "2 x GMACs" in complexity["units"]


def test_onnx_macs_scale_with_batch(exports: dict[str, Path]) -> None:
    path = exports["lora"] / "model.onnx"
    one, four = onnx_macs(path, batch=1), onnx_macs(path, batch=4)
    assert abs(four - 4 * one) / (4 * one) < 0.01


def test_flops_of_a_trainable_model() -> None:
    """A full fine-tune checkpoint loads with trainable parameters; counting must still work (and restore them)."""
    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import build_model

    backbone = BackboneSpec(
        "vit_pe_core_tiny_patch16_384", "random", {"img_size": 32, "patch_size": 8, "depth": 1}
    )
    model, _, _ = build_model(
        backbone, DEFAULT_TASKS, {t.name: HeadSpec() for t in DEFAULT_TASKS}, MethodSpec("full")
    )
    assert torch_flops(model, (32, 32)) > 0
    assert all(p.requires_grad for p in model.parameters())
