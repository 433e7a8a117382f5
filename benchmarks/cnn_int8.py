"""A *trained* CNN through INT8 on CPU: does it keep its predictions, and how much faster does it run?

``benchmarks/backbones.py`` quantizes random-init backbones, whose near-tie logits make the
INT8 top-1 agreement say little. Here each CNN first learns the synthetic face set at the
deployment size (full fine-tuning from random init, BatchNorm statistics estimated on the
images first: the stand-in for hub weights, which cannot be downloaded here), then goes through
the user's chain: checkpoint -> ``run_export`` (FP32 ONNX with BatchNorm folded, INT8 Q/DQ
calibrated on synthetic crops the model never trained on, the agreement gate) -> the SDK's ONNX
Runtime and OpenVINO backends on 2 CPU threads. Side by side in one run:

- the gate's report: INT8 vs FP32 top-1 agreement on the held-out half of the calibration set;
- accuracy of every runtime x precision on a separate labelled test set, their top-1 agreement
  with ONNX Runtime FP32 there and on the 100 real face crops of ``lfw_subset()`` (faces this
  model never saw: out of its distribution, so its margins are smaller there);
- median latency per face at batch 1 and 8, the models taking turns.

Writes ``docs/benchmarks/cnn_int8.md`` and ``cnn_int8.json``.

    python -m benchmarks.cnn_int8                    # ~25 minutes on 2 CPU cores (ResNet-50 trains for 8 of them)
    python -m benchmarks.cnn_int8 --backbones mobilenetv4_conv_small --steps 40 --out /tmp/c.md
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.bench import compare_arrays

from .backbones import (
    PRECISIONS,
    UINT8_FILE,
    calibration_set,
    common_args,
    fit,
    load_synthetic,
    machine_info,
    openvino_latency,
    ort_latency,
    start_logging,
    versions,
)
from .backbones_report import machine_line
from .common import ROOT

log = logging.getLogger("cnn_int8")

CNNS = ("resnet50", "mobilenetv4_conv_small", "convnext_atto", "efficientnet_b0")
RUNS = ("ort fp32", "ort int8", "ort int8u8", "ov fp32", "ov int8", "ov int8u8")
"""Runtime x model file: each runtime runs FP32, the shipped INT8 and the uint8-activation variant."""
GATE_KEYS = (
    "agreement",
    "agreement_lower_bound",
    "passed",
    "held_out",
    "threshold",
    "method",
    "method_search",
)


def synthetic_set(work: Path, label: str, spec: Any, count: int, seed: int) -> Path:
    """``count`` labelled synthetic crops (every label present) collected as a calibration set."""
    from facesdk.calibration.collect import Source, collect
    from facesdk.training.synthetic import SynthOptions, generate_synthetic

    size = spec.input_size[0]
    synth = generate_synthetic(
        work / f"{label}-images", SynthOptions(count=count, size=size, seed=seed, missing=0.0)
    )
    out = work / label
    sources = [Source(synth.train, cropped=True), Source(synth.val, cropped=True)]
    collect(sources, out, spec, count=count, shard_size=64, seed=seed, progress=False)
    return out


def train_export(name: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``name`` on the synthetic set, save it, export FP32 + INT8 (+ the uint8-activation variant)."""
    import torch

    from facesdk.calibration.quantize import quantize_export
    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import build_model, save_checkpoint

    # the model's own preprocessing (size, mean/std), read from a throwaway build
    probe, spec, _ = build_model(
        BackboneSpec(name, "random", {"pretrained_cfg_overlay": {"input_size": [3, args.size, args.size]}}),
        DEFAULT_TASKS, {t.name: HeadSpec() for t in DEFAULT_TASKS}, MethodSpec("linear_probe"),
        load_weights=False,
    )  # fmt: skip
    del probe
    root = work / name
    data = load_synthetic(root, args.synth_count, args.size, spec)
    start = time.perf_counter()
    fitted = fit(name, "full", data, {}, args, size=args.size, lr=args.lr, config={})
    train_s = time.perf_counter() - start
    with torch.no_grad():
        logits = [fitted.model(chunk) for chunk in data["val_x"].split(64)]
    val_acc = {}
    for j, task in enumerate(DEFAULT_TASKS):
        pred = torch.cat([lg[task.name] for lg in logits]).argmax(1)
        known = data["val_y"][:, j] >= 0
        val_acc[task.name] = float((pred[known] == data["val_y"][known, j]).float().mean())
    log.info("%s trained %d steps in %.0f s: val acc %s", name, args.steps, train_s, val_acc)
    ckpt = root / "checkpoint"
    save_checkpoint(
        fitted.model, ckpt, backbone=fitted.spec, preprocess=fitted.preprocess, tasks=DEFAULT_TASKS,
        method=fitted.method, heads=fitted.heads,
    )  # fmt: skip
    calib = synthetic_set(root, "calib", fitted.preprocess, args.calib_count, seed=1)
    int8 = {"method": args.int8_method, "also_keep_float": args.also_keep_float}
    options = ExportOptions(
        ckpt=ckpt, out=root / "export", precisions=("fp32", "int8"), calib=calib, max_batch=8,
        onnx_only=True, force=True,
        int8_options={"accept_drop": True, "sensitivity_budget_s": 0.0, **int8},
    )  # fmt: skip
    manifest = run_export(options)
    report = manifest.models["onnx-int8"].extra["calibration"]
    u8 = quantize_export(
        options.out / "model.onnx", calib, options.out / UINT8_FILE, fitted.preprocess, DEFAULT_TASKS,
        activations="uint8", accept_drop=True, sensitivity_budget_s=0.0, **int8,
    )  # fmt: skip
    return {
        "backbone": name,
        "input_size": args.size,
        "export_dir": str(options.out),
        "params": manifest.complexity["merged"]["params"],
        "gflops": manifest.complexity["merged"]["gflops"],
        "train_s": train_s,
        "train_step_ms": 1000 * statistics.median(fitted.step_s[2:] or fitted.step_s),
        "val_acc": val_acc,
        "gate": {k: report[k] for k in GATE_KEYS if k in report},
        "gate_accuracy": report.get("accuracy"),
        "gate_u8": {k: u8[k] for k in GATE_KEYS if k in u8},
        "test": str(synthetic_set(root, "test", fitted.preprocess, args.test_count, seed=2)),
        "lfw": str(calibration_set(root, fitted.preprocess, 100)),
        "calib": str(calib),
    }


def backends(rec: dict[str, Any], threads: int) -> dict[str, Any]:
    """The SDK's backends for every entry of :data:`RUNS`."""
    from facesdk.backends.onnxruntime import OnnxRuntimeBackend
    from facesdk.backends.openvino import OpenVinoBackend
    from facesdk.contract.export_manifest import load_export_manifest

    manifest = load_export_manifest(rec["export_dir"])
    out: dict[str, Any] = {}
    for run in RUNS:
        runtime, precision = run.split()
        path = Path(rec["export_dir"]) / PRECISIONS[precision]
        if runtime == "ort":
            out[run] = OnnxRuntimeBackend(
                manifest, path, ["CPUExecutionProvider"], intra_op_threads=threads, inter_op_threads=1
            )
        else:
            out[run] = OpenVinoBackend(manifest, path, precision_hint="f32", num_threads=threads)
    return out


def predictions(rec: dict[str, Any], threads: int) -> None:
    """Accuracy (test set) and top-1 agreement with ONNX Runtime FP32 (test set, lfw crops) per run."""
    from facesdk.backends.base import run_batched
    from facesdk.calibration.calibset import load_calibration_set
    from facesdk.tasks import DEFAULT_TASKS

    models = backends(rec, threads)
    try:
        for label in ("test", "lfw"):
            crops, labels = load_calibration_set(rec[label]).arrays(rec[label])
            crops = np.ascontiguousarray(crops, dtype=np.float32)
            outputs = {run: run_batched(m, crops) for run, m in models.items()}
            for run, out in outputs.items():
                comparison = compare_arrays(outputs["ort fp32"], out, inputs=f"{label} crops")
                rec.setdefault("agreement", {}).setdefault(label, {})[run] = {
                    t: a.rate for t, a in comparison.tasks.items()
                }
                pred = {t: np.argmax(v, 1) for t, v in out.items()}
                if label == "test":
                    rec.setdefault("accuracy", {})[run] = {
                        t.name: float(np.mean(pred[t.name] == labels[:, j]))
                        for j, t in enumerate(DEFAULT_TASKS)
                    }
            rec[f"{label}_count"] = len(crops)
    finally:
        for model in models.values():
            model.close()


# ---------------------------------------------------------------------------------------- report
def _tasks(values: dict[str, float]) -> str:
    return " / ".join(f"{values[t]:.3f}" for t in ("age", "gender", "emotion"))


def _passed(report: dict[str, Any]) -> str:
    """``pass`` / ``fail`` with the lowest task's Wilson 95% lower bound (what the gate compares)."""
    verdict = "pass" if report["passed"] else "fail"
    bound = report.get("agreement_lower_bound")
    return f"{verdict}, bound {min(bound.values()):.3f}" if bound else verdict


def _tried(report: dict[str, Any]) -> str:
    search = report.get("method_search") or {report["method"]: report}
    return ", ".join(f"{m} {min(t['agreement'].values()):.3f}" for m, t in search.items())


def rerender(path: Path) -> None:
    """Rewrite the Markdown page from its saved JSON results (the chart is left as it is)."""
    path.write_text(render(json.loads(path.with_suffix(".json").read_text())))


def render(results: dict[str, Any]) -> str:
    a, m, r0 = results["args"], results["machine"], results["deploy"][0]
    lines = [
        "# A trained CNN through INT8 on CPU",
        "",
        f"Written by `{results.get('command', 'python -m benchmarks.cnn_int8')}` ({a['size']} px; full fine-tuning from random init, "
        f"{a['steps']} steps of batch {a['batch']} on {a['synth_count']} synthetic faces; {a['threads']} threads). "
        "The models *learn* the synthetic set first, so their logits have the margins a trained model has: "
        "the random-init models of `backbones.md` give near-tie logits that make INT8 agreement meaningless. "
        "Hub weights (the real starting point) cannot be downloaded here; the synthetic set is easy, so "
        "these margins are larger than a real face model's on real faces. The lfw column measures the same "
        "models on 100 real face crops they never saw (out of their distribution: smaller margins).",
        "",
        f"Machine: {machine_line(m)}; "
        f"load average at the end {tuple(round(x, 1) for x in m['load_average'])}. Run time "
        f"{results['seconds']:.0f} s. Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + ".",
        "",
        "int8: the shipped `model.int8.onnx` (symmetric int8 activations, the TensorRT form, calibrated on "
        f"{a['calib_count']} synthetic crops the model never trained on, half held out for the gate); int8u8: asymmetric "
        "uint8 activations (`--int8-option activations=uint8`, a CPU-only form: TensorRT needs symmetric int8); ort / ov: the SDK's ONNX Runtime and OpenVINO backends "
        '(`backend="openvino"`, f32 hint).',
        "",
        f"![INT8 speed-up and agreement]({Path(a['out']).with_suffix('.png').name})",
        "",
        "## The agreement gate",
        "",
        "What `facesdk export build --precision int8` checks before it writes the model: top-1 agreement "
        f"of ONNX Runtime INT8 with FP32 on the held-out part of the calibration set ({r0['gate']['held_out']} "
        f"crops, Wilson 95% lower bound >= {r0['gate']['threshold']} per task), here with `--int8-option method={a['int8_method']}`"
        + (
            " (entropy, percentile and minmax each calibrate; the best on the held-out crops is kept)"
            if a["int8_method"] == "auto"
            else ""
        )
        + (
            f", kept float besides the defaults: `also_keep_float={json.dumps(a['also_keep_float'])}`"
            if a.get("also_keep_float")
            else ""
        )
        + ".",
        "",
        "| backbone | params | GFLOPs | val acc fp32 (torch) | gate: int8 agreement (method) | "
        "gate: int8u8 agreement (method) | methods tried, lowest agreement: int8; int8u8 |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for r in results["deploy"]:
        gate, u8 = r["gate"], r["gate_u8"]
        lines.append(
            f"| {r['backbone']} | {r['params'] / 1e6:.2f} M | {r['gflops']:.3f} | {_tasks(r['val_acc'])} | "
            f"{_tasks(gate['agreement'])} ({_passed(gate)}, {gate['method']}) | "
            f"{_tasks(u8['agreement'])} ({_passed(u8)}, {u8['method']}) | {_tried(gate)}; {_tried(u8)} |"
        )
    lines += [
        "",
        "## Speed",
        "",
        "Median ms per face; speed-up = FP32 / INT8 on the same runtime at batch 8.",
        "",
        "| backbone | runtime | fp32 b1 | fp32 b8 | int8 b1 | int8 b8 | int8 speed-up b8 | int8u8 b1 | int8u8 b8 | "
        "int8u8 speed-up b8 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["deploy"]:
        for runtime, prefix in (("onnxruntime", ""), ("openvino", "ov_")):
            ms = {
                f"{p}{b}": r[f"{prefix}{p}_b{b}_ms_per_face"]
                for p in ("fp32", "int8", "int8u8")
                for b in (1, 8)
            }
            lines.append(
                f"| {r['backbone']} | {runtime} | {ms['fp321']:.2f} | {ms['fp328']:.2f} | {ms['int81']:.2f} | "
                f"{ms['int88']:.2f} | **{ms['fp328'] / ms['int88']:.2f}x** | {ms['int8u81']:.2f} | "
                f"{ms['int8u88']:.2f} | {ms['fp328'] / ms['int8u88']:.2f}x |"
            )
    lines += [
        "",
        "## Accuracy and agreement per runtime",
        "",
        "Accuracy on the labelled synthetic test set; agreement: top-1 equal to ONNX Runtime FP32's, on the "
        "test set and on the lfw face crops. Per task: age / gender / emotion.",
        "",
        "| backbone | run | test accuracy | agreement (test) | agreement (lfw) |",
        "|---|---|---|---|---|",
    ]
    for r in results["deploy"]:
        for run in RUNS:
            lines.append(
                f"| {r['backbone']} | {run} | {_tasks(r['accuracy'][run])} | "
                f"{_tasks(r['agreement']['test'][run])} | {_tasks(r['agreement']['lfw'][run])} |"
            )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """INT8 speed-up over FP32 at batch 8 per backbone and run, each bar labelled with the lowest
    per-task top-1 agreement with ONNX Runtime FP32 on the test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deploy = results["deploy"]
    bars = [(r, p) for r in RUNS if not r.endswith("fp32") for p in [r.split()[0]]]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    top = 0.0
    for i, (run, runtime) in enumerate(bars):
        precision = run.split()[1]
        prefix = "ov_" if runtime == "ov" else ""
        xs = np.arange(len(deploy)) + (i - (len(bars) - 1) / 2) * width
        ups = [d[f"{prefix}fp32_b8_ms"] / d[f"{prefix}{precision}_b8_ms"] for d in deploy]
        ax.bar(xs, ups, width, label=run, color=f"C{i}")
        top = max(top, *ups)
        for x, up, d in zip(xs, ups, deploy, strict=True):
            low = min(d["agreement"]["test"][run].values())
            ax.text(x, up + 0.02, f"{low:.2f}", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylim(0, top * 1.2)
    ax.set_xticks(np.arange(len(deploy)), [d["backbone"] for d in deploy])
    ax.set_ylabel("INT8 speed-up over FP32, batch 8")
    ax.set_title(
        f"trained CNNs, {results['args']['size']} px, {results['args']['threads']} threads "
        "(bar labels: lowest per-task top-1 agreement with FP32)"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default=",".join(CNNS))
    parser.add_argument("--size", type=int, default=112, help="input px (training and deployment)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--synth-count", type=int, default=1000)
    parser.add_argument(
        "--calib-count",
        type=int,
        default=400,
        help="calibration crops; half are held out, and the gate needs >= 189 held out to reach 0.98",
    )
    parser.add_argument(
        "--int8-method",
        default="auto",
        help="calibration method: entropy, percentile, minmax or auto (the best of the three)",
    )
    parser.add_argument("--test-count", type=int, default=256)
    parser.add_argument(
        "--also-keep-float",
        action="append",
        default=[],
        metavar="PATTERN",
        help="node pattern kept float in every INT8 model, besides the defaults (repeatable)",
    )
    common_args(parser, ROOT / "docs" / "benchmarks" / "cnn_int8.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import torch

    start_logging(log)
    args = parse_args(argv)
    args.train_size = args.size  # what backbones.fit reads
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facesdk-cnn-int8-") as tmp:
        work = args.work or Path(tmp)
        deploy = []
        for name in (b for b in args.backbones.split(",") if b):
            deploy.append(train_export(name, work, args))
            log.info("exported %s: gate %s", name, deploy[-1]["gate"])
        for rec in deploy:
            predictions(rec, args.threads)
        ort_latency(deploy, args.threads, args.rounds)
        openvino_latency(deploy, args.threads, args.rounds, ("fp32", "int8", "int8u8"), agreement=False)
    results = {
        "command": shlex.join(
            ["python", "-m", "benchmarks.cnn_int8", *(sys.argv[1:] if argv is None else argv)]
        ),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "deploy": [
            {k: v for k, v in r.items() if k not in ("export_dir", "calib", "test", "lfw")} for r in deploy
        ],
        "seconds": time.perf_counter() - started,
        "machine": machine_info(),
        "versions": versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    plot(results, args.out.with_suffix(".png"))
    args.out.write_text(render(results))
    log.info("wrote %s (%.0f s)", args.out, results["seconds"])


if __name__ == "__main__":
    sys.exit(main())
