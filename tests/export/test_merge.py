"""Merging LoRA/DoRA adapters: the merged model is plain and gives the same logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facesdk.export.errors import ParityError
from facesdk.export.merge import MERGE_TOLERANCE, check_merge, merge_adapters
from facesdk.export.pipeline import VALIDATION_CROPS, load_for_export, load_validation_crops


def test_merge_is_plain_and_matches(checkpoints: dict[str, Path], method: str) -> None:
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    model, manifest = load_for_export(checkpoints[method])
    merged = merge_adapters(model)
    assert not isinstance(merged.backbone, PeftModel)
    assert not any(isinstance(m, BaseTunerLayer) for m in merged.modules())
    assert isinstance(model.backbone, PeftModel), "merge_adapters must leave the unmerged model intact"
    report = check_merge(model, merged, manifest.preprocess.input_size)
    assert report.max_abs_diff <= MERGE_TOLERANCE
    # the adapters are non-zero: the base weights alone would give other logits
    with model.backbone.disable_adapter(), torch.inference_mode():
        x = torch.randn(2, 3, 64, 64)
        base = model(x)["age"]
    with torch.inference_mode():
        assert (base - merged(x)["age"]).abs().max() > 1e-3


def test_merge_refuses_changed_logits(checkpoints: dict[str, Path]) -> None:
    model, _ = load_for_export(checkpoints["lora"])
    merged = merge_adapters(model)
    with torch.no_grad():
        merged.heads["age"][-1].bias.add_(1e-2)
    with pytest.raises(ParityError, match="changed the logits"):
        check_merge(model, merged, (64, 64))


def test_validation_crops_are_compared(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import save_file

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints["dora"], ckpt)
    save_file({"input": torch.randn(5, 3, 64, 64)}, str(ckpt / VALIDATION_CROPS))
    model, manifest = load_for_export(ckpt)
    crops = load_validation_crops(ckpt, manifest)
    assert crops is not None and crops.shape == (5, 3, 64, 64)
    report = check_merge(model, merge_adapters(model), (64, 64), validation=crops)
    assert report.validation_samples == 5
    assert report.validation_max_abs_diff is not None and report.validation_max_abs_diff <= MERGE_TOLERANCE
