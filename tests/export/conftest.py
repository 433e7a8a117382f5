"""Fixtures: tiny LoRA/DoRA checkpoints (64 px, depth 2) with non-zero adapters, and their exports."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the export tests need the [export] extra (torch)")
pytest.importorskip("onnx", reason="the export tests need the [export] extra (onnx)")

from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec  # noqa: E402
from facesdk.tasks import DEFAULT_TASKS  # noqa: E402

METHODS = ("lora", "dora")
MAX_BATCH = 8


def make_checkpoint(directory: Path, method: str, seed: int = 0) -> Path:
    """Save a tiny random checkpoint whose adapters are non-zero (so merging matters)."""
    from facesdk.training import build_model, save_checkpoint

    torch.manual_seed(seed)
    backbone = BackboneSpec("vit_pe_core_tiny_patch16_384", "random", {"img_size": 64, "depth": 2})
    heads = {t.name: HeadSpec() for t in DEFAULT_TASKS}
    model, preprocess, spec = build_model(backbone, DEFAULT_TASKS, heads, MethodSpec(method, {"rank": 4}))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    save_checkpoint(
        model,
        directory,
        backbone=backbone,
        preprocess=preprocess,
        tasks=DEFAULT_TASKS,
        method=spec,
        heads=heads,
    )
    return directory


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"lora": dir, "dora": dir}``: read-only checkpoints shared by the session."""
    root = tmp_path_factory.mktemp("ckpts")
    return {m: make_checkpoint(root / m, m, seed=i) for i, m in enumerate(METHODS)}


@pytest.fixture(scope="session")
def exports(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"lora": dir, "dora": dir}``: fp32 + fp16 ONNX exports (no engines), max batch 8."""
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export

    root = tmp_path_factory.mktemp("exports")
    out = {}
    for method, ckpt in checkpoints.items():
        options = ExportOptions(
            ckpt=ckpt, out=root / method, precisions=("fp32", "fp16"), max_batch=MAX_BATCH, onnx_only=True
        )
        run_export(options)
        out[method] = root / method
    return out


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)
