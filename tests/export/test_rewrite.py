"""The half-rotation RoPE rewrite: exact against timm's own half layout, parity-checked, recorded."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from facesdk.errors import ConfigError  # noqa: E402
from facesdk.export import rewrite as rewrite_mod  # noqa: E402
from facesdk.export.errors import ParityError  # noqa: E402
from facesdk.export.rewrite import (  # noqa: E402
    half_rotation_permutation,
    resolve_rope_layout,
    rewrite_for_export,
    rope_to_half_rotation,
)

PE = "vit_pe_core_tiny_patch16_384"
TINY = {"pretrained": False, "num_classes": 0, "img_size": 64, "depth": 2}


def _pe(**kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(PE, **{**TINY, **kwargs}).eval()


def _permuted_state(model: torch.nn.Module, head_dim: int, heads: int) -> dict[str, torch.Tensor]:
    """The model's state with each head's q and k rows permuted (even channels, then odd)."""
    perm = half_rotation_permutation(head_dim)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rows = heads * head_dim
    for key, value in state.items():
        if key.endswith("attn.qkv.weight") or key.endswith("attn.qkv.bias"):
            for start in (0, rows):
                block = value[start : start + rows].reshape(heads, head_dim, *value.shape[1:])
                value[start : start + rows] = block[:, perm].reshape(value[start : start + rows].shape)
    return state


def test_permutation_is_even_channels_then_odd() -> None:
    assert half_rotation_permutation(6).tolist() == [0, 2, 4, 1, 3, 5]
    with pytest.raises(ConfigError):
        half_rotation_permutation(5)


def test_timm_half_layout_equals_interleaved_after_the_permutation() -> None:
    """The claim the rewrite rests on, checked with timm's own rope_rotate_half=True model."""
    interleaved = _pe()
    half = _pe(rope_rotate_half=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    half.load_state_dict(_permuted_state(interleaved, 64, 3), strict=False)
    with torch.no_grad():
        ref = interleaved(x)
        assert (half(x) - ref).abs().max() <= 1e-6
        half.load_state_dict(interleaved.state_dict(), strict=False)  # same weights, no permutation
        assert (half(x) - ref).abs().max() > 1e-5


def test_rewrite_matches_timms_half_model_and_table() -> None:
    interleaved = _pe()
    timm_half = _pe(rope_rotate_half=True)
    timm_half.load_state_dict(_permuted_state(interleaved, 64, 3), strict=False)
    ours = copy.deepcopy(interleaved)
    assert rope_to_half_rotation(ours) == 2
    assert torch.equal(ours.rope.pos_embed, timm_half.rope.pos_embed)
    for a, b in zip(ours.parameters(), timm_half.parameters(), strict=True):
        assert torch.equal(a, b)
    assert all(blk.attn.rotate_half for blk in ours.blocks)
    assert rope_to_half_rotation(ours) == 0  # already half: left alone


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        (PE, {}),  # AttentionRope, fused qkv with bias, one class token
        (PE, {"qk_norm": True}),  # per-head q/k LayerNorm parameters permuted too
        (
            "vit_medium_patch16_rope_reg1_gap_256",
            {"embed_dim": 96, "num_heads": 3},
        ),  # EvaAttention, q/k biases
    ],
)
def test_rewrite_parity_per_family(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, **{**TINY, **kwargs}).eval()
    with torch.no_grad():  # sharp attention, non-zero biases and norm parameters: a wrong permutation shows
        for pname, param in model.named_parameters():
            if "bias" in pname or "norm" in pname:
                param.add_(torch.randn_like(param))
            elif "attn.qkv" in pname:
                param.mul_(4.0)
            elif "gamma" in pname:  # layer scale (init 1e-5 in some Evas) would hide the attention branch
                param.fill_(1.0)
    rewritten, report = rewrite_for_export(model, "half", (64, 64), batch=3)
    assert report.rope_layout == "half" and report.applied == 2
    assert report.max_abs_diff <= 1e-4
    assert rewritten is not model and not model.blocks[0].attn.rotate_half  # the original is untouched
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (rewritten(x) - model(x)).abs().max() <= 1e-4


def test_rewrite_covers_blocks_outside_the_backbone_fed_its_rope() -> None:
    from facesdk.training.mtlora import BranchedBackbone

    model = BranchedBackbone(_pe(depth=3), ["age", "gender"], branch_blocks=1).eval()
    with torch.no_grad():  # sharp attention, so a branch left interleaved shows in the logits
        for pname, param in model.named_parameters():
            if "attn.qkv" in pname:
                param.mul_(4.0)
    rewritten, report = rewrite_for_export(model, "half", (64, 64), batch=3)
    assert report.applied == 4  # 2 trunk blocks + 1 branch block per task
    assert report.max_abs_diff <= 1e-4


def test_a_wrong_permutation_fails_the_parity_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rewrite_mod, "half_rotation_permutation", lambda d: torch.arange(d))
    with pytest.raises(ParityError, match="rope-layout interleaved"):
        rewrite_for_export(_pe(), "half", (64, 64), tolerance=1e-6)


def test_models_without_rope_are_untouched() -> None:
    cnn = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    out, report = rewrite_for_export(cnn, "half", (32, 32))
    assert out is cnn and report.rope_layout == "interleaved" and report.applied == 0
    model = _pe()
    out, report = rewrite_for_export(model, "interleaved", (64, 64))
    assert out is model and report.applied == 0


def test_auto_layout_keeps_tensorrt_on_the_interleaved_graph() -> None:
    assert resolve_rope_layout("auto", ()) == "half"
    assert resolve_rope_layout("auto", ("fp16",)) == "interleaved"
    assert resolve_rope_layout("half", ("fp16",)) == "half"
    with pytest.raises(ConfigError):
        resolve_rope_layout("rotated", ())


def _strided_slices(path: Path) -> int:
    """Slice nodes with a constant step of 2: the interleaved RoPE's x[..., 0::2] / x[..., 1::2]."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return sum(
        1
        for n in model.graph.node
        if n.op_type == "Slice" and len(n.input) > 4 and 2 in consts.get(n.input[4], [0]).tolist()
    )


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_export_records_the_layout_of_every_model(
    checkpoints: dict[str, Path], tmp_path: Path, layout: str
) -> None:
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export

    out = tmp_path / layout
    manifest = run_export(
        ExportOptions(
            ckpt=checkpoints["lora"],
            out=out,
            precisions=("fp32", "fp16"),
            max_batch=4,
            onnx_only=True,
            rope_layout=layout,
        )  # fmt: skip
    )
    assert {m.extra["rope_layout"] for m in manifest.models.values()} == {layout}
    assert manifest.parity["rewrite"]["applied"] == (2 if layout == "half" else 0)
    assert manifest.parity["onnx_vs_torch"]["max_abs_diff"] <= 1e-4  # against the original merged model
    slices = _strided_slices(out / "model.onnx")
    assert (slices == 0) if layout == "half" else (slices > 0)
    try:
        import openvino as ov
    except ImportError:
        return
    # what the rewrite is for: OpenVINO fuses the half layout into RoPE nodes (one per q and k per block)
    compiled = ov.Core().compile_model(str(out / "model.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    kinds = [n.get_rt_info()["layerType"].astype(str) for n in compiled.get_runtime_model().get_ops()]
    assert kinds.count("RoPE") == (4 if layout == "half" else 0)
