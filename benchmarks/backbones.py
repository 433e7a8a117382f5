"""ViT and CNN backbones side by side: adaptation cost and accuracy, then deployment cost on CPU.

Part 1 (train): every backbone x method (lora, dora, vera, norm) trains a few steps on one
synthetic face set at a small input size: trainable parameters, training memory, step time,
validation accuracy per task. Part 2 (deploy): every backbone is exported at the deployment
size (fp32 ONNX, then INT8 Q/DQ through facesdk.calibration on lfw_subset() face crops): GFLOPs,
ONNX Runtime latency per face at batch 1 and 8 on 2 threads, FP32/INT8 top-1 agreement, and
end-to-end frames per second of the Analyzer (YuNet + crops + backbone) on a one-face and a
six-face frame. Writes ``docs/benchmarks/backbones.md``, ``backbones.json`` and ``backbones.png``.

Every backbone is random-init (no hub here): BatchNorm statistics are estimated on the data
first (timm's 0/1 statistics would make EfficientNet's features vanish), standing in for
pretrained ones. Latency does not depend on the weights; accuracy and INT8 agreement do.

    python -m benchmarks.backbones                      # ~10-15 minutes on 2 shared CPU cores
    python -m benchmarks.backbones --backbones resnet50,convnext_atto --steps 20 --out /tmp/b.md
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.backends.onnxruntime import OnnxFileBackend
from facesdk.bench import compare_outputs, cpu_info, library_versions, time_calls

from .backbones_report import plot, render
from .common import ROOT, add_detector_option, cpu_session, detector_path
from .methods import saved_activations_mib

log = logging.getLogger("backbones")

VIT = "vit_pe_core_tiny_patch16_384"
BACKBONES = (VIT, "convnext_atto", "efficientnet_b0", "mobilenetv4_conv_small", "resnet50")
METHODS: dict[str, dict[str, Any]] = {
    "lora": {"rank": 8, "alpha": 16},
    "dora": {"rank": 8, "alpha": 16},
    "vera": {"rank": 64},
    "norm": {},
}
LR = {"lora": 5e-3, "dora": 5e-3, "vera": 2e-2, "norm": 1e-2}
UINT8_FILE = "model.int8-u8.onnx"
PRECISIONS = {"fp32": "model.onnx", "int8": "model.int8.onnx", "int8u8": UINT8_FILE}
"""Timed models: fp32, the shipped Q/DQ int8 (symmetric int8 activations, the TensorRT form) and
the CPU-only variant with asymmetric uint8 activations."""


def backbone_kwargs(name: str, size: int, train: bool) -> dict[str, Any]:
    """timm kwargs for ``size`` px: CNNs through the pretrained-config overlay, the ViT by img_size.

    At the small training size the ViT uses 8 px patches (16 tokens at 32 px, as configs/smoke.yaml);
    deployed it keeps its own 16 px patches.
    """
    if name.startswith("vit_"):
        return {"img_size": size, **({"patch_size": 8} if train and size < 64 else {})}
    return {"pretrained_cfg_overlay": {"input_size": [3, size, size]}}


# ---------------------------------------------------------------------------------------- part 1
def _bn_stats(model: Any, crops: Any) -> list[tuple[Any, Any]]:
    from torch import nn

    from facesdk.training.backbones import estimate_batchnorm_stats

    estimate_batchnorm_stats(model, [crops])
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return [(m.running_mean.clone(), m.running_var.clone()) for m in norms]


def _set_bn_stats(model: Any, stats: list[tuple[Any, Any]]) -> None:
    """Copy estimated statistics in, then damp EfficientNet's residual branches (docs/backbones.md)."""
    import torch
    from torch import nn

    from facesdk.training.backbones import damp_residual_branches

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m, (mean, var) in zip(norms, stats, strict=True):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
    damp_residual_branches(model)  # a random-init EfficientNet is chaotic otherwise


def _mib(tensors: Any) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _evaluate(model: Any, x: Any, y: Any, tasks: Any) -> dict[str, float]:
    import torch

    from facesdk.training.reporting import accuracy_metrics

    model.eval()
    with torch.no_grad():
        logits = [model(chunk) for chunk in x.split(128)]
    out = {}
    for j, task in enumerate(tasks):
        pred = torch.cat([lg[task.name] for lg in logits]).argmax(1).numpy()
        out[task.name] = accuracy_metrics(pred, y[:, j].numpy(), task.num_classes)["acc"]
    return out


@dataclass
class Fitted:
    """One backbone x method after training: the model and what saving it needs."""

    model: Any
    spec: Any
    heads: dict[str, Any]
    method: Any
    preprocess: Any
    optimizer: Any
    step_s: list[float]


def fit(
    name: str, method: str, data: dict[str, Any], stats: dict[str, Any], args: Any, *,
    size: int, lr: float | None = None, config: dict[str, Any] | None = None,
) -> Fitted:  # fmt: skip
    """Build ``name`` at ``size`` px with ``method``, estimate BatchNorm statistics on the
    training images (cached in ``stats``), train ``args.steps`` steps of ``args.batch``."""
    import torch

    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.training import build_model
    from facesdk.training.losses import MultiTaskLoss
    from facesdk.training.methods import get_method

    tasks = data["tasks"]
    lr = LR[method] if lr is None else lr
    torch.manual_seed(0)
    spec = BackboneSpec(name, "random", backbone_kwargs(name, size, train=size == args.train_size))
    heads = {t.name: HeadSpec() for t in tasks}
    model, preprocess, method_spec = build_model(
        spec, tasks, heads, MethodSpec(method, METHODS.get(method, {}) if config is None else config),
        load_weights=False,
    )  # fmt: skip
    if name not in stats:
        stats[name] = _bn_stats(model, data["train_x"][:128])
    _set_bn_stats(model, stats[name])
    impl = get_method(method)
    groups = impl.param_groups(model, method_spec.config, lr, 0.01)
    optimizer = impl.optimizer(groups, method_spec.config, lr=lr, weight_decay=0.01)
    loss_fn = MultiTaskLoss(tasks)
    gen = torch.Generator().manual_seed(0)
    n = len(data["train_x"])
    times = []
    model.train()
    for _ in range(args.steps):
        rows = torch.randint(n, (args.batch,), generator=gen)
        start = time.perf_counter()
        loss, _ = loss_fn(model(data["train_x"][rows]), data["train_y"][rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    model.eval()
    return Fitted(model, spec, heads, method_spec, preprocess, optimizer, times)


def train_run(name: str, method: str, data: dict[str, Any], stats: dict[str, Any], args: Any) -> dict:
    """Build, train ``args.steps`` steps and evaluate one backbone x method; returns its record."""
    import torch

    from facesdk.training.methods import count_parameters

    fitted = fit(name, method, data, stats, args, size=args.train_size)
    model, optimizer = fitted.model, fitted.optimizer
    trainable = [p for p in model.parameters() if p.requires_grad]
    state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    activations = saved_activations_mib(model, data["train_x"][: args.batch])
    record = {
        "backbone": name,
        "method": method,
        **count_parameters(model),
        "weights_mib": _mib(model.parameters()) + _mib(model.buffers()),
        "grads_mib": _mib(trainable),
        "optimizer_mib": _mib(state),
        "activations_mib": activations,
        "step_ms": 1000 * statistics.median(fitted.step_s[2:] or fitted.step_s),
        "val_acc": _evaluate(model, data["val_x"], data["val_y"], data["tasks"]),
    }
    record["train_memory_mib"] = sum(
        record[k] for k in ("weights_mib", "grads_mib", "optimizer_mib", "activations_mib")
    )
    log.info("%s / %s: %s", name, method, {k: record[k] for k in ("trainable", "step_ms", "val_acc")})
    return record


def load_synthetic(work: Path, count: int, size: int, spec: Any = None) -> dict[str, Any]:
    """The synthetic set at ``size`` px, preprocessed once: by ``spec`` (a model's ``Preprocess``;
    the whole image is the crop) or, by default, with ImageNet mean/std and bicubic resizing."""
    import dataclasses

    import torch

    from facesdk.preprocess import CropPolicy, Preprocess
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training.data import FaceDataset
    from facesdk.training.datasets.manifest import read_manifest
    from facesdk.training.synthetic import SynthOptions, generate_synthetic

    synth = generate_synthetic(work / "data", SynthOptions(count=count, size=size, seed=0))
    if spec is None:
        spec = Preprocess(input_size=(size, size), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    spec = dataclasses.replace(spec, crop=CropPolicy(kind="full"))
    out: dict[str, Any] = {"tasks": DEFAULT_TASKS}
    for split, manifest in (("train", synth.train), ("val", synth.val)):
        dataset = FaceDataset(read_manifest(manifest), DEFAULT_TASKS, spec)
        items = [dataset[i] for i in range(len(dataset))]
        out[f"{split}_x"] = torch.stack([x for x, _ in items])
        out[f"{split}_y"] = torch.stack([y for _, y in items])
    return out


# ---------------------------------------------------------------------------------------- part 2
def calibration_set(work: Path, spec: Any, count: int) -> Path:
    """``count`` lfw_subset() face crops through facesdk.calibration.collect at the model's spec."""
    import cv2
    from skimage import data

    from facesdk.calibration.collect import Source, collect

    crops = work / "lfw"
    crops.mkdir(parents=True, exist_ok=True)
    with open(work / "lfw.csv", "w", newline="") as fh:
        rows = csv.writer(fh)
        rows.writerow(["path", "age_group", "gender", "emotion", "cropped"])
        for i, face in enumerate(data.lfw_subset()[:count]):
            cv2.imwrite(str(crops / f"{i:03d}.png"), (face * 255 + 0.5).astype(np.uint8))
            rows.writerow([f"lfw/{i:03d}.png", "", "", "", 1])
    out = work / f"calib-{spec.fingerprint()[:12]}"
    collect([Source(work / "lfw.csv")], out, spec, count=count, shard_size=32, progress=False)
    return out


def export_backbone(name: str, work: Path, args: Any) -> dict[str, Any]:
    """Random-init checkpoint at the deployment size (BatchNorm from the crops) -> fp32 + int8 export."""
    import torch

    from facesdk.calibration.calibset import load_calibration_set
    from facesdk.calibration.quantize import quantize_export
    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import build_model, save_checkpoint

    torch.manual_seed(0)
    spec = BackboneSpec(name, "random", backbone_kwargs(name, args.deploy_size, train=False))
    heads = {t.name: HeadSpec() for t in DEFAULT_TASKS}
    model, preprocess, method = build_model(
        spec, DEFAULT_TASKS, heads, MethodSpec("linear_probe"), load_weights=False
    )
    calib = calibration_set(work, preprocess, args.calib_count)
    crops, _ = load_calibration_set(calib).arrays(calib)
    # statistics over the face crops and as many random inputs (what the export's parity checks feed)
    torch.manual_seed(1)
    faces = torch.from_numpy(np.ascontiguousarray(crops))
    _set_bn_stats(model, _bn_stats(model, torch.cat([faces, torch.randn_like(faces)])))
    ckpt = work / "ckpt" / name
    save_checkpoint(
        model, ckpt, backbone=spec, preprocess=preprocess, tasks=DEFAULT_TASKS, method=method, heads=heads
    )
    options = ExportOptions(
        ckpt=ckpt, out=work / "export" / name, precisions=("fp32", "int8"), calib=calib, max_batch=8,
        onnx_only=True, force=True, int8_options={"accept_drop": True, "sensitivity_budget_s": 0.0},
    )  # fmt: skip
    start = time.perf_counter()
    manifest = run_export(options)
    export_s = time.perf_counter() - start
    report = manifest.models["onnx-int8"].extra["calibration"]
    u8 = quantize_export(  # the CPU-only variant: asymmetric uint8 activations (docs/int8.md)
        options.out / "model.onnx", calib, options.out / UINT8_FILE, preprocess, DEFAULT_TASKS,
        activations="uint8", accept_drop=True, sensitivity_budget_s=0.0,
    )  # fmt: skip
    return {
        "backbone": name,
        "input_size": args.deploy_size,
        "export_dir": str(options.out),
        "export_s": export_s,
        "params": manifest.complexity["merged"]["params"],
        "gflops": manifest.complexity["merged"]["gflops"],
        "int8_agreement": report["agreement"],
        "int8_passed": bool(report["passed"]),
        "int8_gate": {
            k: report[k] for k in ("held_out", "threshold", "agreement_lower_bound") if k in report
        },
        "int8_quantized_nodes": len(report["quantized_nodes"]),
        "int8u8_agreement": u8["agreement"],
        "int8u8_passed": bool(u8["passed"]),
        "calib": str(calib),
    }


Runs = dict[tuple[str, str, int], tuple[Callable[[], Any], list[float]]]
"""(backbone, precision, batch) -> (one call of that model on its batch, the times measured)."""


def _inputs(size: int, batch: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)


def _take_turns(runs: Runs, records: list[dict[str, Any]], rounds: int, prefix: str = "") -> None:
    """Time every call ``rounds`` times, the models taking turns so load from other jobs hits all
    alike; store each median as ``<prefix><precision>_b<batch>_ms`` (and ``..._ms_per_face``)."""
    for call, _ in runs.values():
        call()  # warm-up
    for _ in range(rounds):
        for call, times in runs.values():
            times += time_calls(call, warmup=0, repeats=1)
    by_name = {rec["backbone"]: rec for rec in records}
    for (name, precision, batch), (_, times) in runs.items():
        ms = statistics.median(times)
        by_name[name][f"{prefix}{precision}_b{batch}_ms"] = ms
        by_name[name][f"{prefix}{precision}_b{batch}_ms_per_face"] = ms / batch


def ort_latency(records: list[dict[str, Any]], threads: int, rounds: int) -> None:
    """Median ms per batch of each export's fp32/int8 models at batch 1 and 8 (ONNX Runtime)."""
    runs: Runs = {}
    for rec in records:
        for precision, file in PRECISIONS.items():
            session = cpu_session(Path(rec["export_dir"]) / file, threads)
            for batch in (1, 8):
                call = functools.partial(session.run, None, {"input": _inputs(rec["input_size"], batch)})
                runs[rec["backbone"], precision, batch] = (call, [])
    _take_turns(runs, records, rounds)
    for rec in records:
        rec["int8_speedup_b8"] = rec["fp32_b8_ms"] / rec["int8_b8_ms"]
        rec["int8u8_speedup_b8"] = rec["fp32_b8_ms"] / rec["int8u8_b8_ms"]


def openvino_latency(
    records: list[dict[str, Any]], threads: int, rounds: int, precisions: tuple[str, ...] = ("fp32", "int8"),
    agreement: bool = True,
) -> None:  # fmt: skip
    """The same model files (``precisions``) through the SDK's OpenVINO backend (CPU, f32 hint).

    Median ms per batch at batch 1 and 8, the models taking turns, and (``agreement``) the int8 model's
    top-1 agreement with ONNX Runtime's fp32 on the calibration crops (all of them). OpenVINO runs the
    Q/DQ graph with its own int8 kernels (it folds each pair into the convolution or MatMul).
    """
    from facesdk.backends.openvino import OpenVinoBackend
    from facesdk.calibration.calibset import load_calibration_set
    from facesdk.contract.export_manifest import load_export_manifest

    runs: Runs = {}
    backends = {}
    for rec in records:
        manifest = load_export_manifest(rec["export_dir"])
        for precision in precisions:
            path = Path(rec["export_dir"]) / PRECISIONS[precision]
            for batch in (1, 8):  # a backend per batch size: one request never changes its shape
                key = (rec["backbone"], precision, batch)
                backends[key] = OpenVinoBackend(manifest, path, precision_hint="f32", num_threads=threads)
                runs[key] = (functools.partial(backends[key].run, _inputs(rec["input_size"], batch)), [])
    _take_turns(runs, records, rounds, prefix="ov_")
    for rec in records:
        rec["ov_int8_speedup_b8"] = rec["ov_fp32_b8_ms"] / rec["ov_int8_b8_ms"]
        rec["ov_int8_vs_ort_fp32_b8"] = rec["fp32_b8_ms"] / rec["ov_int8_b8_ms"]
        if not agreement:
            continue
        crops, _ = load_calibration_set(rec["calib"]).arrays(rec["calib"])
        fp32 = Path(rec["export_dir"]) / PRECISIONS["fp32"]
        with OnnxFileBackend(fp32, max_batch=8, intra_op_threads=threads) as reference:
            comparison = compare_outputs(reference, backends[rec["backbone"], "int8", 8], crops)
        rec["ov_int8_agreement"] = {task: a.rate for task, a in comparison.tasks.items()}
        rec["ov_int8_agreement_crops"] = comparison.crops
    for backend in backends.values():
        backend.close()


def frames() -> dict[str, np.ndarray]:
    """The astronaut (one face) and a 3 x 2 tiling of it (six faces), BGR."""
    import cv2
    from skimage import data

    one = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return {"1 face": one, "6 faces": np.concatenate([np.concatenate([one] * 3, axis=1)] * 2, axis=0)}


def analyzer_fps(records: list[dict[str, Any]], threads: int, repeats: int, detector: Path) -> None:
    """End-to-end frames per second of the Analyzer (detect, crop, one batched backbone call)."""
    import cv2

    from facesdk import Analyzer

    cv2.setNumThreads(threads)
    images = frames()
    for rec in records:
        for precision in ("fp32", "int8"):
            with Analyzer(
                rec["export_dir"], backend="onnxruntime", detector=detector, precision=precision,
                providers=["CPUExecutionProvider"], intra_op_threads=threads, inter_op_threads=1,
            ) as analyzer:  # fmt: skip
                for label, image in images.items():
                    found = len(analyzer.analyze(image).faces)  # warm-up, and how many faces it saw
                    start = time.perf_counter()
                    for i in range(repeats):
                        analyzer.analyze(image, index=i)
                    rec[f"fps_{precision}_{label.split()[0]}"] = repeats / (time.perf_counter() - start)
                    rec[f"faces_{label.split()[0]}"] = found


# ---------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--train-size", type=int, default=32, help="input px of part 1")
    parser.add_argument("--deploy-size", type=int, default=112, help="input px of part 2")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--synth-count", type=int, default=500)
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=8, help="Analyzer frames per measurement")
    common_args(parser, ROOT / "docs" / "benchmarks" / "backbones.md")
    return parser.parse_args(argv)


def common_args(parser: argparse.ArgumentParser, out: Path) -> None:
    """Options shared with ``cnn_int8.py``: timing rounds, threads, the report and a scratch folder."""
    parser.add_argument("--rounds", type=int, default=15, help="latency samples per model and batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    add_detector_option(parser)


def start_logging(logger: logging.Logger) -> None:
    """INFO from ``logger``; WARNING elsewhere (ORT's quantizer warns on the root logger per call)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    import torch

    start_logging(log)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    backbones = [b for b in args.backbones.split(",") if b]
    methods = [m for m in args.methods.split(",") if m]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facesdk-backbones-") as tmp:
        work = args.work or Path(tmp)
        data = load_synthetic(work, args.synth_count, args.train_size)
        stats: dict[str, Any] = {}
        train = [train_run(b, m, data, stats, args) for b in backbones for m in methods]
        part1 = time.perf_counter() - started
        deploy = []
        for name in backbones:
            deploy.append(export_backbone(name, work, args))
            log.info("exported %s: %s", name, deploy[-1])
        ort_latency(deploy, args.threads, args.rounds)
        openvino_latency(deploy, args.threads, args.rounds)
        analyzer_fps(deploy, args.threads, args.repeats, detector_path(args.detector))
    results = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "train": train,
        "deploy": [{k: v for k, v in r.items() if k not in ("export_dir", "calib")} for r in deploy],
        "seconds": {"train": part1, "total": time.perf_counter() - started},
        "machine": machine_info(),
        "versions": versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    plot(results, args.out.with_suffix(".png"))
    args.out.write_text(render(results, args.out.with_suffix(".png").name))
    log.info("wrote %s (%.0f s)", args.out, results["seconds"]["total"])


def machine_info() -> dict[str, Any]:
    """The report's machine line, from :func:`facesdk.bench.cpu_info`."""
    import os

    cpu = cpu_info()
    return {
        "cpu": cpu["model"],
        "cores_visible": cpu["cores"],
        "flags": cpu["flags"],
        "avx512_vnni": "avx512_vnni" in cpu["flags"],
        "load_average": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    """Library versions, from :func:`facesdk.bench.library_versions` (plus timm)."""
    from importlib.metadata import version

    return {**library_versions(), "timm": version("timm")}


if __name__ == "__main__":
    sys.exit(main())
