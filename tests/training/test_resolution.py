"""Input resolution as a choice: the 224/288 px edge configs, and 384 px weights resampled as timm does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from facesdk.contract.checkpoint import BackboneSpec  # noqa: E402
from facesdk.training.config import config_from_mapping  # noqa: E402
from facesdk.training.model import create_backbone, preprocess_from_backbone  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PE = "vit_pe_core_tiny_patch16_384"


@pytest.mark.parametrize("size", [224, 288])
def test_edge_configs_differ_from_384_only_in_img_size(size: int) -> None:
    base = yaml.safe_load((ROOT / "configs/pe_core_t16_dora.yaml").read_text())
    data = yaml.safe_load((ROOT / f"configs/pe_core_t16_dora_{size}.yaml").read_text())
    assert data["model"].pop("kwargs") == {"img_size": size}
    assert data == base
    data["model"]["kwargs"] = {"img_size": size}
    data["data"] = {"synthetic": {"count": 20}}
    cfg = config_from_mapping(data)
    assert dict(cfg.model.kwargs) == {"img_size": size}


@pytest.mark.parametrize("size", [224, 288])
def test_384_weights_load_resampled_at_another_size(tmp_path: Path, size: int) -> None:
    """What happens to hub weights: timm's filter resamples the absolute position embedding."""
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    source = timm.create_model(PE, pretrained=False, num_classes=0, depth=1)
    weights = tmp_path / "pe_t16_384.pth"
    torch.save(source.state_dict(), weights)
    model = create_backbone(BackboneSpec(PE, f"file:{weights}", {"img_size": size, "depth": 1}))
    grid = size // 16
    assert tuple(model.pos_embed.shape) == (1, 1 + grid * grid, 192)
    want = resample_abs_pos_embed(source.pos_embed, new_size=(grid, grid), num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed, want)
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    assert preprocess_from_backbone(model).input_size == (size, size)
    assert tuple(model.rope.feat_shape) == (grid, grid)  # RoPE is rebuilt for the new grid
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 192)
