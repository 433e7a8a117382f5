"""``facesdk bench``: parameters, GFLOPs and latency of every way to run one model, side by side.

Each latency row runs in its own subprocess (ONNX Runtime's idle threads spin and would slow
any other runtime sharing the process), and rows are measured twice in alternating order so
slow drift of a shared machine hits every row alike. Ratios between rows of one run are the
numbers to quote; absolute times vary between machines and runs.

``--zeroshot-clip NAME`` adds the parameters and GFLOPs of a zero-shot CLIP model run both
ways: with its text encoder at inference, and compiled into heads (``facesdk zeroshot``);
without ``--model`` it reports only that.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DependencyError
from .export_manifest import load_export_manifest
from .manifest_io import atomic_write_bytes, atomic_write_json
from .outputs import check_output_dir

__all__ = ["main", "run_bench", "cpu_info", "measure_row", "zeroshot_complexity"]

log = logging.getLogger(__name__)

TORCH_MODES = ("plain", "unmerged", "merged")


def cpu_info() -> dict[str, Any]:
    """CPU model and the instruction sets that matter for int8/bf16 inference."""
    model, flags = platform.processor() or "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and model in ("unknown", "", platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "amx_tile")
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def _time_calls(fn: Any, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _torch_runner(row: dict[str, Any]) -> Any:
    import torch

    from facesdk.checkpoint import MethodSpec
    from facesdk.training import build_model, load_checkpoint_with_manifest

    torch.set_num_threads(row["threads"])
    model, manifest = load_checkpoint_with_manifest(row["ckpt"])
    if row["mode"] == "plain":
        model, _, _ = build_model(
            manifest.backbone, manifest.tasks, manifest.heads, MethodSpec("linear_probe"), load_weights=False
        )
    elif row["mode"] == "merged":
        from facesdk.export.merge import merge_adapters

        model = merge_adapters(model)
    model.eval()
    h, w = manifest.preprocess.input_size
    x = torch.randn(row["batch"], 3, h, w)

    def call() -> None:
        with torch.inference_mode():
            model(x)

    return call


def _ort_runner(row: dict[str, Any]) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = row["threads"]
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(row["onnx"], options, providers=["CPUExecutionProvider"])
    shape = [row["batch"], *session.get_inputs()[0].shape[1:]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def _openvino_runner(row: dict[str, Any]) -> Any:
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": row["threads"]}
    if row.get("precision_hint"):
        config["INFERENCE_PRECISION_HINT"] = row["precision_hint"]
    compiled = ov.Core().compile_model(row["onnx"], "CPU", config)
    chosen = compiled.get_property("INFERENCE_PRECISION_HINT")
    row["inference_precision"] = str(getattr(chosen, "get_type_name", lambda: chosen)())  # reported, not set
    shape = [row["batch"], *(d.get_length() for d in list(compiled.inputs[0].get_partial_shape())[1:])]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    request = compiled.create_infer_request()
    return lambda: request.infer({0: x})


def measure_row(row: dict[str, Any]) -> dict[str, Any]:
    """Time one row in this process; ``row`` names the runtime, model, batch and threads."""
    runners = {"torch": _torch_runner, "onnxruntime": _ort_runner, "openvino": _openvino_runner}
    runner = runners[row["runtime"]](row)
    times = _time_calls(runner, row.get("warmup", 3), row["repeats"])
    return {**row, "times_ms": times}


def _measure_in_subprocess(row: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(row["threads"])}
    proc = subprocess.run(
        [sys.executable, "-m", "facesdk.bench", "--worker", json.dumps(row)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        log.warning("row %s failed: %s", row["label"], " | ".join(tail))
        return {**row, "times_ms": [], "error": " | ".join(tail)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rows(
    ckpt: Path | None, export_dir: Path, batches: Sequence[int], threads: int, repeats: int
) -> list[dict]:
    manifest = load_export_manifest(export_dir)
    rows: list[dict[str, Any]] = []
    for batch in batches:
        if batch > manifest.max_batch:
            raise ConfigError(f"batch {batch} exceeds the export's maximum batch {manifest.max_batch}")
        base = {"batch": batch, "threads": threads, "repeats": repeats}
        if ckpt is not None:
            for mode in TORCH_MODES:
                rows.append(
                    {**base, "runtime": "torch", "mode": mode, "ckpt": str(ckpt), "label": f"torch {mode}"}
                )
        for key, entry in manifest.models.items():
            if entry.format == "onnx" and entry.precision in ("fp32", "int8"):
                onnx = str(export_dir / entry.file.path)
                label = f"onnxruntime {entry.precision}"
                rows.append({**base, "runtime": "onnxruntime", "onnx": onnx, "label": label, "key": key})
                rows += _openvino_rows(base, onnx, key, entry.precision)
    return rows


def _openvino_rows(base: dict[str, Any], onnx: str, key: str, precision: str) -> list[dict[str, Any]]:
    """OpenVINO CPU rows when ``openvino`` is installed: FP32 with hint f32, and the CPU's default precision."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return []
    row = {**base, "runtime": "openvino", "onnx": onnx, "key": key}
    rows = [{**row, "precision_hint": None, "label": f"openvino {precision} (default precision)"}]
    if precision == "fp32":
        rows.insert(0, {**row, "precision_hint": "f32", "label": "openvino fp32 (hint f32)"})
    return rows


def _summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for res in results:
        key = (res["label"], res["batch"])
        entry = merged.setdefault(
            key, {"label": res["label"], "batch": res["batch"], "times_ms": [], "errors": []}
        )
        entry["times_ms"] += res["times_ms"]
        if res.get("inference_precision"):
            entry["inference_precision"] = res["inference_precision"]
        if res.get("error"):
            entry["errors"].append(res["error"])
    table = []
    for entry in merged.values():
        times = np.asarray(entry["times_ms"]) if entry["times_ms"] else None
        table.append(
            {
                "label": entry["label"],
                "batch": entry["batch"],
                "p50_ms": float(np.percentile(times, 50)) if times is not None else None,
                "p95_ms": float(np.percentile(times, 95)) if times is not None else None,
                "per_face_ms": float(np.percentile(times, 50)) / entry["batch"]
                if times is not None
                else None,
                "samples": 0 if times is None else len(times),
                "error": "; ".join(entry["errors"]) or None,
                **(
                    {"inference_precision": entry["inference_precision"]}
                    if "inference_precision" in entry
                    else {}
                ),
            }
        )
    for batch in {row["batch"] for row in table}:
        ref = next((r for r in table if r["batch"] == batch and r["label"] == "onnxruntime fp32"), None)
        for row in table:
            if row["batch"] == batch and ref and ref["p50_ms"] and row["p50_ms"]:
                row["vs_onnxruntime_fp32"] = row["p50_ms"] / ref["p50_ms"]
    return table


def _complexity_table(export_manifest: Any) -> list[dict[str, Any]]:
    rows = []
    for variant, info in export_manifest.complexity.items():
        if isinstance(info, dict):
            rows.append({"model": variant, **{k: v for k, v in info.items() if not isinstance(v, dict)}})
    return rows


def _end_to_end(
    export_dir: Path, video: Path | None, frames: int, detector: str | None
) -> dict[str, Any] | None:
    """Per-stage frame time of the Analyzer on a video (decode, detect, align, infer, post)."""
    if video is None:
        return None
    from .analyzer import Analyzer

    with Analyzer(export_dir, backend="onnxruntime", detector=detector) as analyzer:
        count = 0
        for _ in analyzer.stream(str(video)):
            count += 1
            if count >= frames:
                break
        stats = analyzer.stats()
    return {"video": str(video), "frames": count, "stages": stats}


def zeroshot_complexity(clip: str, prompts: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Parameters and GFLOPs per image of zero-shot ``clip`` (random init): text encoder at
    inference vs compiled into heads. Needs the ``[zeroshot]`` extra (torch, open_clip)."""
    try:
        from facesdk.training.zeroshot.complexity import measure
        from facesdk.training.zeroshot.prompts import load_prompts
    except ImportError as exc:
        raise DependencyError(
            f"--zeroshot-clip needs the [zeroshot] extra ({exc}); pip install 'facesdk[zeroshot]'"
        ) from exc
    return measure(clip, load_prompts(prompts))


def _zeroshot_lines(zs: dict[str, Any]) -> list[str]:
    ref, ours = zs["reference"], zs["compiled"]
    text = f"vision {ref['vision_gflops']:.1f} + text {ref['text_gflops']:.1f}"
    return [
        f"## Zero-shot {zs['clip']} ({zs['prompts']} prompts, {sum(zs['tasks'].values())} classes)",
        "",
        "| way | params (M) | GFLOPs per image |",
        "|---|---|---|",
        f"| text encoder at inference ({text}) | {ref['params'] / 1e6:.1f} | {ref['gflops']:.1f} |",
        f"| compiled into heads | {ours['params'] / 1e6:.1f} | {ours['gflops']:.1f} |",
        "",
    ]


def run_bench(
    export_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    ckpt: str | os.PathLike[str] | None = None,
    batches: Sequence[int] = (1, 8),
    threads: int = 2,
    repeats: int = 10,
    video: str | os.PathLike[str] | None = None,
    frames: int = 60,
    detector: str | None = None,
    zeroshot: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure every row side by side and write ``bench.json``, ``bench.md`` and ``bench.png``.

    ``zeroshot`` (from :func:`zeroshot_complexity`) is added to the report as it is.
    """
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    manifest = load_export_manifest(export_dir)
    rows = _rows(Path(ckpt) if ckpt else None, export_dir, batches, threads, max(1, repeats // 2))
    results = []
    for order in (rows, rows[::-1]):
        for row in order:
            log.info("measuring %s at batch %d", row["label"], row["batch"])
            results.append(_measure_in_subprocess(row))
    report = {
        "cpu": cpu_info(),
        "threads": threads,
        "export": str(export_dir),
        "checkpoint": str(ckpt) if ckpt else None,
        "complexity": _complexity_table(manifest),
        "latency": _summarise(results),
        "end_to_end": _end_to_end(export_dir, Path(video) if video else None, frames, detector),
        "zeroshot": zeroshot,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "bench.json", report)
    atomic_write_bytes(out_dir / "bench.md", render_markdown(report).encode())
    _plot(report, out_dir / "bench.png")
    return report


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    cpu = report["cpu"]
    lines = [
        "# facesdk bench",
        "",
        f"CPU: {cpu['model']} ({cpu['cores']} cores; {', '.join(cpu['flags']) or 'no avx512/amx'}); "
        f"{report['threads']} threads per runtime. Each row ran in its own process, twice, in alternating order.",
        "",
    ]
    if report["complexity"]:
        keys = sorted({k for row in report["complexity"] for k in row if k != "model"})
        lines += [
            "## Size and compute",
            "",
            "| model | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 1) + "|",
        ]
        lines += [
            "| " + " | ".join([row["model"], *(_fmt(row.get(k)) for k in keys)]) + " |"
            for row in report["complexity"]
        ]
        lines.append("")
    lines += [
        "## Latency",
        "",
        "| runtime | batch | p50 ms | p95 ms | ms per face | vs ORT fp32 | samples |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sorted(report["latency"], key=lambda r: (r["batch"], r["label"])):
        label = row["label"] + (
            f" [runs {row['inference_precision']}]" if row.get("inference_precision") else ""
        )
        cells = [label, row["batch"], row["p50_ms"], row["p95_ms"], row["per_face_ms"]]
        cells += [row.get("vs_onnxruntime_fp32"), row["samples"]]
        lines.append(
            "| "
            + " | ".join(_fmt(c) for c in cells)
            + " |"
            + (f" error: {row['error']}" if row["error"] else "")
        )
    if report.get("zeroshot"):
        lines += ["", *_zeroshot_lines(report["zeroshot"])]
    e2e = report.get("end_to_end")
    if e2e:
        lines += ["", f"## End to end ({e2e['frames']} frames of {Path(e2e['video']).name})", ""]
        lines += ["| stage | mean ms | share |", "|---|---|---|"]
        stages = {k: v for k, v in e2e["stages"].items() if isinstance(v, dict) and "mean" in v}
        total = sum(v["mean"] for v in stages.values()) or 1.0
        for name, value in stages.items():
            lines.append(f"| {name} | {value['mean']:.2f} | {100 * value['mean'] / total:.1f}% |")
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no chart written (pip install matplotlib)")
        return
    rows = [r for r in report["latency"] if r["p50_ms"]]
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 3.5), squeeze=False)
    for ax, batch in zip(axes[0], batches, strict=True):
        sel = sorted((r for r in rows if r["batch"] == batch), key=lambda r: r["label"])
        ax.barh([r["label"] for r in sel], [r["p50_ms"] for r in sel], xerr=None, color="#4c72b0")
        ax.set_title(f"batch {batch}: p50 latency (ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None, prog: str = "facesdk bench") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=False, help="export directory")
    parser.add_argument("--ckpt", help="checkpoint directory (adds torch plain/unmerged/merged rows)")
    parser.add_argument("--out", default="bench", help="output directory for bench.json/.md/.png")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--threads", type=int, default=2, help="threads per runtime (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row and batch (default 10)")
    parser.add_argument("--video", help="a video for the end-to-end stage split")
    parser.add_argument("--frames", type=int, default=60, help="frames of --video to analyse (default 60)")
    parser.add_argument("--detector", help="path to the YuNet detector model")
    parser.add_argument(
        "--zeroshot-clip",
        metavar="NAME",
        help="open_clip model (e.g. PE-Core-T-16-384): params and GFLOPs with the text encoder at "
        "inference vs compiled into heads",
    )
    parser.add_argument("--zeroshot-prompts", help="prompts YAML for --zeroshot-clip (default prompts)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure_row(json.loads(args.worker))))
        return 0
    if not args.model and not args.zeroshot_clip:
        parser.error("--model EXPORT_DIR (or --zeroshot-clip NAME) is required")
    check_output_dir(args.out, [args.model, args.ckpt, args.video, args.detector, args.zeroshot_prompts],
                     reuse=True, manifests=("bench.json",))  # fmt: skip
    zeroshot = zeroshot_complexity(args.zeroshot_clip, args.zeroshot_prompts) if args.zeroshot_clip else None
    if not args.model:
        text = "\n".join(["# facesdk bench", "", *_zeroshot_lines(zeroshot)])  # type: ignore[arg-type]
        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(args.out) / "bench.json", {"zeroshot": zeroshot})
        atomic_write_bytes(Path(args.out) / "bench.md", text.encode())
        print(text)
        return 0
    try:
        batches = [int(b) for b in args.batches.split(",") if b]
    except ValueError:
        raise ConfigError(f"--batches must be comma-separated integers, got {args.batches!r}") from None
    report = run_bench(
        args.model,
        args.out,
        args.ckpt,
        batches,
        args.threads,
        args.repeats,
        args.video,
        args.frames,
        args.detector,
        zeroshot,
    )
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
