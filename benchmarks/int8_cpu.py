"""ONNX Runtime FP32 vs INT8 on CPU for the edge backbone (``vit_pe_core_tiny_patch16_384``).

Builds the random-init model at its full 384 px input, exports it (opset 18), collects a
calibration set from scikit-image's ``astronaut()`` (detected) and ``lfw_subset()`` (already
cropped, crop policy ``full``), quantizes it in several ways and times every model in its own
process (ONNX Runtime's idle threads spin) at batch 1 and 8 with two intra-op threads.
Writes ``docs/benchmarks/int8.md`` and ``docs/benchmarks/int8.png``.

Run: ``python -m benchmarks.int8_cpu [--work DIR] [--iters 10]`` (about 5-10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.bench import compare_arrays, cpu_info, time_calls

from .common import DOCS, add_detector_option, child, cpu_session, detector_path

log = logging.getLogger("int8_cpu")


def worker(path: str, batch: int, iters: int, threads: int, profile: str | None) -> dict[str, Any]:
    """Time one model (run in a child process) through an SDK ONNX Runtime session."""
    extra = {"enable_profiling": True, "profile_file_prefix": profile} if profile else {}
    sess = cpu_session(path, threads, **extra)
    size = sess.get_inputs()[0].shape[2]
    x = np.random.default_rng(0).normal(0, 0.5, (batch, 3, size, size)).astype(np.float32)
    times = time_calls(lambda: sess.run(None, {"input": x}), warmup=2, repeats=iters)
    out: dict[str, Any] = {"median_ms": float(np.median(times)), "min_ms": float(np.min(times))}
    if profile:
        out["profile"] = op_shares(sess.end_profiling())
    return out


def op_shares(trace: str) -> dict[str, float]:
    """Share of node time per op type from an ORT profile."""
    events = json.loads(Path(trace).read_text())
    per_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e.get("args", {}).get("op_name", "?")] += e.get("dur", 0)
    total = sum(per_op.values()) or 1
    return {k: round(v / total, 3) for k, v in per_op.most_common(8)}


def optimized_ops(path: Path, out: Path) -> dict[str, int]:
    """Op counts of the graph ONNX Runtime actually runs (after its optimizations)."""
    import onnx
    import onnxruntime as ort

    extended = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    cpu_session(path, 2, graph_optimization_level=extended, optimized_model_filepath=str(out))
    counts = collections.Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    keys = (
        "MatMul",
        "FusedMatMul",
        "QLinearMatMul",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QuantizeLinear",
        "DequantizeLinear",
        "Softmax",
        "QLinearSoftmax",
    )
    return {k: counts[k] for k in keys if counts[k]}


def time_model(path: Path, batch: int, iters: int, profile: Path | None = None) -> dict[str, Any]:
    extra = ["--profile", str(profile)] if profile else []
    return child(__spec__.name, "--worker", str(path), "--batch", str(batch), "--iters", str(iters), *extra)


def build(work: Path, detector: Path, kwargs: dict[str, Any]) -> tuple[Path, Any, Any]:
    """Export the random-init edge model and collect a calibration set for it."""
    import cv2
    import torch
    from skimage import data

    from facesdk.calibration.collect import Source, collect
    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.export.onnx_export import export_onnx
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import build_model

    torch.manual_seed(0)
    model, spec, _ = build_model(
        BackboneSpec("vit_pe_core_tiny_patch16_384", "random", kwargs),
        DEFAULT_TASKS,
        {t.name: HeadSpec() for t in DEFAULT_TASKS},
        MethodSpec("linear_probe", {}),
        load_weights=False,
    )
    fp32 = work / "model.onnx"
    if not fp32.is_file():
        export_onnx(model, fp32, input_size=spec.input_size, output_names=[t.name for t in DEFAULT_TASKS])
    images, crops = work / "images", work / "lfw"
    images.mkdir(exist_ok=True)
    crops.mkdir(exist_ok=True)
    cv2.imwrite(str(images / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    for i, face in enumerate(data.lfw_subset()[:100]):
        cv2.imwrite(str(crops / f"lfw{i:03d}.png"), (face * 255 + 0.5).astype(np.uint8))
    calib = work / "calib"
    collect(
        [Source(images), Source(crops, cropped=True)],
        calib,
        spec,
        count=64,
        detector=str(detector),
        progress=False,
    )
    return fp32, spec, calib


def variants(work: Path, fp32: Path, spec: Any, calib: Path) -> dict[str, dict[str, Any]]:
    """Quantize the model several ways; return {name: {path, agreement}}."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from facesdk.calibration.quantize import BACKBONE_KEEP_FLOAT, default_keep_float, quantize_export
    from facesdk.tasks import DEFAULT_TASKS

    out: dict[str, dict[str, Any]] = {"ORT FP32": {"path": fp32, "agreement": None}}
    products = {"*/attn/MatMul", "*/attn/MatMul_1"}  # attention products: activation x activation
    assert products <= set(BACKBONE_KEEP_FLOAT), "the default kept-float list no longer names them"
    attn = [p for p in default_keep_float(DEFAULT_TASKS) if p not in products]
    settings = (
        ("Q/DQ s8 sym (TensorRT form), entropy", {"method": "entropy"}),
        ("Q/DQ u8 asym activations (CPU), minmax", {"method": "minmax", "activations": "uint8"}),
        ("Q/DQ s8 sym + attention products, minmax", {"method": "minmax", "keep_float": attn}),
    )
    for name, kwargs in settings:
        path = work / f"variant{len(out)}.int8.onnx"
        rep = quantize_export(
            fp32, calib, path, spec, DEFAULT_TASKS, accept_drop=True, sensitivity_budget_s=0, **kwargs
        )
        out[name] = {"path": path, "agreement": rep["agreement"]}
    dyn = work / "dynamic.onnx"
    quantize_dynamic(
        str(fp32), str(dyn), op_types_to_quantize=["MatMul"], per_channel=True, weight_type=QuantType.QInt8
    )
    out["dynamic int8 (MatMul weights only)"] = {"path": dyn, "agreement": agreement(fp32, dyn, calib)}
    return out


def agreement(ref: Path, cand: Path, calib: Path) -> dict[str, float]:
    from facesdk.calibration.accuracy import model_outputs
    from facesdk.calibration.calibset import load_calibration_set

    x, _ = load_calibration_set(calib).arrays(calib)
    names = ["age", "gender", "emotion"]
    comparison = compare_arrays(model_outputs(ref, x, names), model_outputs(cand, x, names), names)
    return {t: a.rate for t, a in comparison.tasks.items()}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [r["name"] for r in rows]
    for k, batch in enumerate((1, 8)):
        ax.barh(
            np.arange(len(rows)) + 0.4 * k, [r[f"b{batch}"] for r in rows], height=0.4, label=f"batch {batch}"
        )
    ax.set_yticks(np.arange(len(rows)) + 0.2, names)
    ax.set_xlabel("median latency, ms (2 threads)")
    ax.invert_yaxis()
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_doc(
    rows: list[dict[str, Any]], cpu: dict[str, Any], profiles: dict[str, Any], seconds: float, docs: Path
) -> None:
    import onnxruntime as ort

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# INT8 on CPU: ONNX Runtime FP32 vs INT8",
        "",
        f"Measured by `benchmarks/int8_cpu.py` on {time.strftime('%Y-%m-%d')} in {seconds:.0f} s. "
        f"CPU: {cpu['model']}; flags: {', '.join(cpu['flags']) or 'none of interest'}. "
        f"ONNX Runtime {ort.__version__}, 2 intra-op threads, each model in its own process, "
        "`vit_pe_core_tiny_patch16_384` random init, 384 x 384 input, 3 heads. Each model runs once per round "
        "in its own process; a time is the best round's median, a speed-up is FP32's best over the model's best "
        "(the per-round ratios follow in brackets). The machine is shared with other jobs (load average "
        f"{load}), so compare ratios of one run, not absolute times across runs.",
        "",
        "| model | batch 1 ms | batch 8 ms | speed-up b1 (per round) | speed-up b8 (per round) "
        "| top-1 agreement (age/gender/emotion) | ops ORT runs |",
        "|---|---|---|---|---|---|---|",
    ]
    base = rows[0]
    for r in rows:
        agr = "/".join(f"{v:.3f}" for v in r["agreement"].values()) if r["agreement"] else "reference"
        ops = ", ".join(f"{k} {v}" for k, v in r["ops"].items())
        per = {b: ", ".join(f"{x:.2f}" for x in r[f"ratio{b}"]) for b in (1, 8)}
        lines.append(
            f"| {r['name']} | {r['b1']:.1f} | {r['b8']:.1f} | {base['b1'] / r['b1']:.2f}x ({per[1]}) | "
            f"{base['b8'] / r['b8']:.2f}x ({per[8]}) | {agr} | {ops} |"
        )
    lines += ["", "![latency](int8.png)", "", "Op time shares at batch 8 (ONNX Runtime profiler):", ""]
    for name, shares in profiles.items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    lines += [
        "",
        "Agreement is measured on the held-out half of the 64-crop calibration set (32 crops: the gate's "
        "figure, Q/DQ) or on all of it (dynamic), with random weights: it says the quantization is sound, not "
        "how a trained model fares, and 32 crops bound it only loosely (32 of 32 agreeing: Wilson 95% lower "
        "bound 0.893). See `docs/int8.md` for the discussion.",
        "",
    ]
    (docs / "int8.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--profile", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--iters", type=int, default=4, help="timed runs at batch 8 (x3 at batch 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for int8.md and int8.png")
    parser.add_argument("--img-size", type=int, default=None, help="input px (default: the model's 384)")
    parser.add_argument(
        "--depth", type=int, default=None, help="ViT blocks (default: all; smoke tests use 1)"
    )
    add_detector_option(parser)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.iters, 2, args.profile)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    start = time.monotonic()
    cpu = cpu_info()
    log.info("CPU %s, flags %s", cpu["model"], cpu["flags"])
    work = args.work or Path(tempfile.mkdtemp(prefix="facesdk-int8-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    kwargs = {k: v for k, v in (("img_size", args.img_size), ("depth", args.depth)) if v is not None}
    fp32, spec, calib = build(work, detector_path(args.detector), kwargs)
    models = variants(work, fp32, spec, calib)
    rows = [
        {
            "name": name,
            "agreement": info["agreement"],
            "ops": optimized_ops(info["path"], work / f"opt{i}.onnx"),
        }
        for i, (name, info) in enumerate(models.items())
    ]
    # Rounds over all models, one process per model and batch: the machine is shared, so each
    # model's time is the best round's median, and the ratio is also taken within each round.
    for rnd in range(args.rounds):
        for row, info in zip(rows, models.values(), strict=True):
            for batch in (1, 8):
                iters = args.iters * (3 if batch == 1 else 1)
                row.setdefault(f"r{batch}", []).append(time_model(info["path"], batch, iters)["median_ms"])
            log.info("round %d %s: %s", rnd, row["name"], {k: row[k][-1] for k in ("r1", "r8")})
    for row in rows:
        for batch in (1, 8):
            row[f"b{batch}"] = min(row[f"r{batch}"])
            row[f"ratio{batch}"] = [
                f / r for f, r in zip(rows[0][f"r{batch}"], row[f"r{batch}"], strict=True)
            ]
    profiles = {
        row["name"]: time_model(info["path"], 8, 3, work / f"prof{i}")["profile"]
        for i, (row, info) in enumerate(zip(rows, models.values(), strict=True))
        if i < 2
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / "int8.png")
    write_doc(rows, cpu, profiles, time.monotonic() - start, args.out)
    print((args.out / "int8.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
