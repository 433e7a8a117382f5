"""Convolutional backbones: every listed family × lora/dora/vera/norm trains, round-trips, merges, exports.

Random-init backbones at 32 px (the CNNs take any input size; the checkpoint records it), made to
behave like pretrained ones so the parity tolerances mean something: BatchNorm statistics are
estimated on one batch of 128 random crops (with timm's 0/1 statistics EfficientNet's features
vanish, ~1e-5, and every parity passes trivially; estimated from small batches they blow up, as
the last stages see 1x1 maps), and EfficientNet's residual branches are damped (its random init is
chaotic: merged-vs-unmerged and ONNX-vs-torch then differ by ~3e-4 from float rounding alone).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the CNN tests need the [train] extra")
onnx = pytest.importorskip("onnx", reason="the CNN export tests need the [export] extra")

from torch import nn  # noqa: E402

from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec  # noqa: E402
from facesdk.errors import ConfigError  # noqa: E402
from facesdk.faces.model_store import PACKAGED_DETECTOR  # noqa: E402
from facesdk.tasks import DEFAULT_TASKS  # noqa: E402
from facesdk.training import build_model, load_checkpoint, save_checkpoint  # noqa: E402
from facesdk.training.backbones import damp_residual_branches, estimate_batchnorm_stats  # noqa: E402
from facesdk.training.conv_adapters import ConvVeraLayer, apply_conv_vera  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BACKBONES = ("convnext_atto", "efficientnet_b0", "mobilenetv4_conv_small", "resnet50")
METHODS = {"lora": {"rank": 4}, "dora": {"rank": 4}, "vera": {"rank": 8}, "norm": {}}
EXPORTED = {  # one method per backbone goes through the whole export (each method once)
    "convnext_atto": "lora",
    "efficientnet_b0": "dora",
    "mobilenetv4_conv_small": "vera",
    "resnet50": "norm",
}
SIZE = 32
HEADS = {t.name: HeadSpec() for t in DEFAULT_TASKS}
NAMES = [t.name for t in DEFAULT_TASKS]


def _spec(backbone: str, size: int = SIZE) -> BackboneSpec:
    return BackboneSpec(backbone, "random", {"pretrained_cfg_overlay": {"input_size": [3, size, size]}})


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in model.named_buffers() if "running_" in n}


_STATS: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}


def _pretrained_like(model: nn.Module, backbone: str) -> None:
    """Estimated BatchNorm statistics (once per backbone) and damped EfficientNet residual branches."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if backbone not in _STATS:
        torch.manual_seed(1)
        estimate_batchnorm_stats(model, [torch.randn(128, 3, SIZE, SIZE)])
        _STATS[backbone] = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    with torch.no_grad():
        for m, (mean, var) in zip(norms, _STATS[backbone], strict=True):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
    damp_residual_branches(model)  # EfficientNet's random init is chaotic otherwise


PROBE = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
"""The input whose logits a reloaded checkpoint must reproduce exactly."""


def _train_and_save(directory: Path, backbone: str, method: str) -> tuple[dict[str, torch.Tensor], Path]:
    """Two AdamW steps on random crops and labels, then a checkpoint; BatchNorm stats must not move.

    Returns:
        The trained model's logits on :data:`PROBE` and the checkpoint directory.
    """
    torch.manual_seed(0)
    spec = _spec(backbone)
    model, preprocess, method_spec = build_model(
        spec, DEFAULT_TASKS, HEADS, MethodSpec(method, METHODS[method]), load_weights=False
    )
    _pretrained_like(model, backbone)
    stats = _bn_buffers(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-3)
    model.train()
    for _ in range(2):
        logits = model(torch.randn(4, 3, SIZE, SIZE))
        loss = sum(nn.functional.cross_entropy(v, torch.randint(v.shape[1], (4,))) for v in logits.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    for name, value in _bn_buffers(model).items():  # the policy: running statistics stay frozen
        torch.testing.assert_close(value, stats[name], rtol=0, atol=0)
    save_checkpoint(
        model,
        directory,
        backbone=spec,
        preprocess=preprocess,
        tasks=DEFAULT_TASKS,
        method=method_spec,
        heads=HEADS,
    )
    with torch.no_grad():
        return model(PROBE), directory


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], tuple[dict, Path]]:
    """``trained(backbone, method)``: logits on :data:`PROBE` and the checkpoint, built once per module."""
    root = tmp_path_factory.mktemp("cnn_ckpts")
    cache: dict[tuple[str, str], tuple[dict, Path]] = {}

    def get(backbone: str, method: str) -> tuple[dict, Path]:
        if (backbone, method) not in cache:
            cache[backbone, method] = _train_and_save(root / f"{backbone}-{method}", backbone, method)
        return cache[backbone, method]

    return get


@pytest.fixture(scope="module")
def exported(
    trained: Callable[[str, str], tuple[dict, Path]], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """``exported(backbone)``: the FP32 ONNX export directory of its :data:`EXPORTED` checkpoint."""
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export

    root = tmp_path_factory.mktemp("cnn_exports")
    cache: dict[str, Path] = {}

    def get(backbone: str) -> Path:
        if backbone not in cache:
            _, ckpt = trained(backbone, EXPORTED[backbone])
            out = root / backbone
            run_export(ExportOptions(ckpt=ckpt, out=out, precisions=("fp32",), max_batch=8, onnx_only=True))
            cache[backbone] = out
        return cache[backbone]

    return get


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("backbone", BACKBONES)
def test_trains_reloads_and_merges(trained, backbone: str, method: str) -> None:
    from facesdk.export.merge import check_merge, merge_adapters
    from facesdk.training.merging import _leftover_adapters

    ref, ckpt = trained(backbone, method)
    manifest = json.loads((ckpt / "checkpoint.json").read_text())
    assert manifest["preprocess"]["input_size"] == [SIZE, SIZE]
    assert manifest["preprocess"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    if method != "norm":  # 'auto' was resolved and recorded: the exact layers, no depthwise conv
        target = manifest["method"]["config"]["target"]
        assert target != "auto" and "conv_dw" not in target and "dw_mid" not in target
    again = load_checkpoint(ckpt)
    with torch.no_grad():
        got = again(PROBE)
    for name in NAMES:
        torch.testing.assert_close(got[name], ref[name], rtol=0, atol=0)
    merged = merge_adapters(again)
    assert not _leftover_adapters(merged)
    report = check_merge(again, merged, (SIZE, SIZE))  # raises above 1e-4
    assert report.max_abs_diff <= 1e-4


@pytest.mark.parametrize("backbone", BACKBONES)
def test_export_folds_batchnorm_and_matches_torch(exported, backbone: str) -> None:
    out = exported(backbone)
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["preprocess"]["input_size"] == [SIZE, SIZE]
    assert manifest["parity"]["merge"]["max_abs_diff"] <= 1e-4
    assert manifest["parity"]["onnx_vs_torch"]["max_abs_diff"] <= 1e-4
    ops = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    assert "Conv" in ops
    assert "BatchNormalization" not in ops  # folded into the preceding convolutions


@pytest.mark.gpu
def test_tensorrt_engines_of_a_cnn(trained, tmp_path: Path, tensorrt_gpu: None) -> None:
    """The CNN path through TensorRT: FP32 and FP16 engines from a ResNet's folded ONNX, each
    checked against ONNX Runtime by the export's own parity step."""
    from facesdk.contract.export_manifest import load_export_manifest
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export
    from facesdk.export.tensorrt_check import AGREEMENT_MIN

    _, ckpt = trained("resnet50", EXPORTED["resnet50"])
    out = tmp_path / "engines"
    run_export(ExportOptions(ckpt=ckpt, out=out, precisions="fp32,fp16", max_batch=8))
    manifest = load_export_manifest(out, verify=True)
    for precision in ("fp32", "fp16"):
        assert manifest.model("engine", precision).tensorrt
        low = {
            n: t
            for n, t in manifest.parity[f"engine-{precision}"]["tasks"].items()
            if t["top1_agreement"] < AGREEMENT_MIN[precision]
        }
        assert not low, (precision, low)


def test_analyzer_runs_a_cnn_export(exported, tmp_path: Path) -> None:
    data = pytest.importorskip("skimage.data")
    import cv2

    from facesdk import Analyzer

    yunet = PACKAGED_DETECTOR
    if not yunet.is_file():
        pytest.skip(f"YuNet test model not found at {yunet}")
    frame = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    with Analyzer(exported("mobilenetv4_conv_small"), backend="onnxruntime", detector=yunet) as analyzer:
        result = analyzer.analyze(frame)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert set(face.attributes) == set(NAMES)
    for task in NAMES:
        assert sum(face.attributes[task].probs.values()) == pytest.approx(1.0, abs=1e-4)


def test_int8_of_a_cnn_passes_the_agreement_gate(exported, tmp_path: Path) -> None:
    """EfficientNet-B0's model.onnx through calibration.quantize on face crops from lfw_subset()."""
    data = pytest.importorskip("skimage.data")
    import csv

    import cv2

    from facesdk.calibration.collect import Source, collect
    from facesdk.calibration.quantize import quantize_export
    from facesdk.contract.export_manifest import load_export_manifest

    out = exported("efficientnet_b0")
    manifest = load_export_manifest(out)
    (tmp_path / "lfw").mkdir()
    with open(tmp_path / "lfw.csv", "w", newline="") as fh:
        rows = csv.writer(fh)
        rows.writerow(["path", "age_group", "gender", "emotion", "cropped"])
        for i, face in enumerate(data.lfw_subset()[:96]):
            cv2.imwrite(str(tmp_path / f"lfw/{i:03d}.png"), (face * 255 + 0.5).astype(np.uint8))
            rows.writerow([f"lfw/{i:03d}.png", "", "", "", 1])
    calib = tmp_path / "calib"
    collect(
        [Source(tmp_path / "lfw.csv")], calib, manifest.preprocess, count=96, shard_size=32, progress=False
    )
    int8 = tmp_path / "model.int8.onnx"
    # 96 crops hold out 48 (half): all agreeing give a Wilson lower bound of 0.926, one miss 0.891,
    # two 0.86; this random-init model's near-tie logits flip one crop, so the gate here is 0.88.
    report = quantize_export(
        out / "model.onnx", calib, int8, manifest.preprocess, manifest.tasks, threshold=0.88
    )
    assert report["passed"] and report["held_out"] == 48
    assert min(report["agreement"].values()) >= 47 / 48
    assert any("/conv_pw/" in n for n in report["quantized_nodes"])  # the convolutions are int8
    assert not any("/conv_stem/" in n for n in report["quantized_nodes"])  # the stem stays float
    ops = [n.op_type for n in onnx.load(str(int8)).graph.node]
    assert ops.count("DequantizeLinear") > len(report["quantized_nodes"])


def test_smoke_cnn_config_trains(tmp_path: Path) -> None:
    """configs/smoke_cnn.yaml, shortened, through the real Trainer."""
    from facesdk.contract.checkpoint import load_checkpoint_manifest
    from facesdk.training.config import load_config
    from facesdk.training.trainer import Trainer

    config = load_config(
        ROOT / "configs" / "smoke_cnn.yaml",
        ["data.synthetic={count: 48, missing: 0.3, seed: 0, size: 32}", "optim.epochs=1", "optim.batch_size=16",
         "model.kwargs={pretrained_cfg_overlay: {input_size: [3, 32, 32]}}"],
    )  # fmt: skip
    summary = Trainer(config, tmp_path / "run").run()
    assert summary["steps"] > 0
    manifest = load_checkpoint_manifest(tmp_path / "run" / "checkpoint")
    assert manifest.preprocess.input_size == (32, 32)
    assert manifest.backbone.name == "mobilenetv4_conv_small" and manifest.method.name == "lora"
    assert "pw_exp" in manifest.method.config["target"]  # 'auto' resolved for this family


# ---------------------------------------------------------------------------- conv VeRA, targets, GaLore
def _conv_stack() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),  # depthwise
        nn.Conv2d(16, 24, 1),
        nn.Conv2d(24, 12, (3, 5), stride=2, padding=(1, 2)),
    )


def test_conv_vera_parameter_count_and_exact_merge() -> None:
    from facesdk.training.conv_adapters import merge_conv_adapters

    net = _conv_stack()
    rank = 6
    names = ["0", "2", "3", "4"]
    outs = [net.get_submodule(n).out_channels for n in names]
    layers = apply_conv_vera(net, names, rank=rank, d_initial=0.1, seed=0)
    assert all(isinstance(net.get_submodule(n), ConvVeraLayer) for n in names)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trainable == sum(rank + out for out in outs)  # r + d_out per conv layer
    # one shared projection pair, sized for the largest fan-in (24*3*5 = 360) and output count (24)
    assert len({id(layer.vera_projections) for layer in layers}) == 1
    assert tuple(layers[0].vera_projections.vera_A.shape) == (rank, 360)
    assert tuple(layers[0].vera_projections.vera_B.shape) == (24, rank)
    x = torch.randn(2, 8, 12, 20)
    with torch.no_grad():
        untouched = net(x)
        for layer in layers:
            layer.vera_lambda_b.normal_()
            layer.vera_lambda_d.normal_()
        adapted = net(x)
    assert (adapted - untouched).abs().max() > 1e-3  # b = 0 at the start; now the update is live
    merged = merge_conv_adapters(net)
    assert merged == 4 and not any(isinstance(m, ConvVeraLayer) for m in net.modules())
    assert all(type(net.get_submodule(n)) is nn.Conv2d for n in names)
    with torch.no_grad():
        torch.testing.assert_close(net(x), adapted, rtol=0, atol=0)  # exact: the same kernel


def test_conv_vera_delta_is_the_vera_formula() -> None:
    net = _conv_stack()
    (layer,) = apply_conv_vera(net, ["4"], rank=4, d_initial=0.1, seed=3)
    with torch.no_grad():
        layer.vera_lambda_b.normal_()
    a = layer.vera_projections.vera_A[:, : 24 * 3 * 5]
    b = layer.vera_projections.vera_B[:12]
    expected = torch.diag(layer.vera_lambda_b) @ b @ torch.diag(layer.vera_lambda_d) @ a
    torch.testing.assert_close(layer.delta_weight().reshape(12, -1), expected)


def test_default_targets_leave_depthwise_out_and_explicit_ones_are_checked() -> None:
    model, _, spec = build_model(
        _spec("efficientnet_b0"), DEFAULT_TASKS, HEADS, MethodSpec("lora", {"rank": 4}), load_weights=False
    )
    adapted = {n.rsplit(".base_layer", 1)[0] for n, _ in model.named_modules() if n.endswith(".base_layer")}
    assert adapted and all(n.split(".")[-1] in ("conv_pw", "conv_pwl", "conv_head") for n in adapted)
    depthwise = r"blocks\.1\.0\.conv_dw"
    with pytest.raises(ConfigError, match="grouped conv"):
        build_model(
            _spec("efficientnet_b0"), DEFAULT_TASKS, HEADS, MethodSpec("lora", {"target": depthwise}),
            load_weights=False,
        )  # fmt: skip
    model, _, _ = build_model(  # asked for, VeRA adapts a depthwise conv (it merges into grouped kernels)
        _spec("efficientnet_b0"), DEFAULT_TASKS, HEADS, MethodSpec("vera", {"rank": 4, "target": depthwise}),
        load_weights=False,
    )  # fmt: skip
    layer = model.backbone.get_submodule("blocks.1.0.conv_dw")
    assert isinstance(layer, ConvVeraLayer) and layer.base_layer.groups == 96
    with pytest.raises(ConfigError, match="matches no layer"):
        build_model(
            _spec("resnet50"), DEFAULT_TASKS, HEADS, MethodSpec("dora", {"target": r"blocks\.\d+\.attn\.qkv"}),
            load_weights=False,
        )  # fmt: skip


def test_norm_tunes_batchnorm_and_layernorm_affine_only() -> None:
    for backbone, kind in (("resnet50", nn.BatchNorm2d), ("convnext_atto", nn.LayerNorm)):
        model, _, _ = build_model(
            _spec(backbone), DEFAULT_TASKS, HEADS, MethodSpec("norm", {}), load_weights=False
        )
        modules = dict(model.named_modules())
        names = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("heads.")]
        assert names and all(isinstance(modules[n.rsplit(".", 1)[0]], kind) for n in names), backbone


def test_galore_projects_reshaped_conv_kernels() -> None:
    from facesdk.training.methods import get_method

    model, _, spec = build_model(
        _spec("mobilenetv4_conv_small"), DEFAULT_TASKS, HEADS, MethodSpec("galore", {"rank": 4}),
        load_weights=False,
    )  # fmt: skip
    method = get_method("galore")
    optimizer = method.optimizer(method.param_groups(model, spec.config, 1e-3, 0.0), spec.config, lr=1e-3)
    model.train()
    loss = sum(v.square().mean() for v in model(torch.randn(2, 3, SIZE, SIZE)).values())
    loss.backward()
    optimizer.step()
    kernel = model.backbone.blocks[1][0].conv.weight  # 96 x 32 x 3 x 3
    state = optimizer.state[kernel]
    assert kernel.ndim == 4 and state["exp_avg"].shape == (4, 32 * 3 * 3)  # moments of the (96, 288) matrix
