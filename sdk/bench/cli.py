"""``facesdk bench``: parameters, GFLOPs and latency of every way to run one model, side by side.

Each latency row runs in its own subprocess (ONNX Runtime's idle threads spin and would slow
any other runtime sharing the process), and rows are measured twice in alternating order so
slow drift of a shared machine hits every row alike. Ratios between rows of one run are the
numbers to quote; absolute times vary between machines and runs. Every session comes from
:mod:`facesdk.backends`, so a row times exactly what the Analyzer runs.

``--ckpt`` adds the torch rows registered by the training stage (``[train]`` extra);
``--zeroshot-clip NAME`` adds the parameters and GFLOPs of a zero-shot CLIP model run both
ways: with its text encoder at inference, and compiled into heads (``facesdk zeroshot``);
without ``--model`` it reports only that.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..arguments import positive_int
from ..backends import create_backend
from ..backends.base import stream_batch
from ..contract.export_manifest import load_export_manifest
from ..errors import ConfigError, FaceSdkError
from ..outputs import StagedDir, check_output_dir, merge_into
from ..plugins import load_plugin
from .machine import cpu_info, describe_cpu, machine_info
from .report import fmt, write_report
from .timing import alternate_rounds, peak_rss_mib, run_in_child, summarise, time_calls

__all__ = [
    "main",
    "auto_choice",
    "run_bench",
    "measure_row",
    "render_markdown",
    "zeroshot_complexity",
    "REFERENCE_ROW",
]

log = logging.getLogger(__name__)

REFERENCE_ROW = "onnxruntime fp32"
WORKER = "facesdk.bench"


def _backend_runner(row: dict[str, Any]) -> Callable[[], Any]:
    """A call of the SDK backend the Analyzer would create for this row (same session options)."""
    manifest = load_export_manifest(row["model"])
    if row["runtime"] == "onnxruntime":
        opts: dict[str, Any] = {
            "providers": ["CPUExecutionProvider"],
            "intra_op_threads": row["threads"],
            "inter_op_threads": 1,
        }
    else:
        opts = {"precision_hint": row.get("precision_hint"), "num_threads": row["threads"]}
        if row.get("batch_buckets"):  # backend auto's rows time the buckets its paths compile
            opts["batch_buckets"] = tuple(row["batch_buckets"])
    backend = create_backend(row["runtime"], manifest, row["onnx"], **opts)
    if getattr(backend, "inference_precision", None):
        row["inference_precision"] = backend.inference_precision  # reported, not set
    row["stream_batch"] = stream_batch(backend)  # crops per call a stream sends it (auto weighs memory there)
    h, w = manifest.preprocess.input_size
    x = np.random.default_rng(0).standard_normal((row["batch"], 3, h, w)).astype(np.float32)
    return lambda: backend.run(x)


def _runner(row: dict[str, Any]) -> Callable[[], Any]:
    if row["runtime"] in ("onnxruntime", "openvino"):
        return _backend_runner(row)
    return load_plugin("bench", row["runtime"], "train").runner(row)


def measure_row(row: dict[str, Any]) -> dict[str, Any]:
    """Time one row in this process; ``row`` names the runtime, model, batch and threads."""
    runner = _runner(row)
    times = time_calls(runner, row.get("warmup", 3), row["repeats"])
    return {**row, "times_ms": times, "peak_rss_mib": peak_rss_mib()}


def _rows(
    ckpt: Path | None, export_dir: Path, batches: Sequence[int], threads: int, repeats: int
) -> list[dict]:
    manifest = load_export_manifest(export_dir)
    torch_rows = load_plugin("bench", "torch", "train").rows if ckpt is not None else None
    rows: list[dict[str, Any]] = []
    for batch in batches:
        if batch > manifest.max_batch:
            raise ConfigError(f"batch {batch} exceeds the export's maximum batch {manifest.max_batch}")
        base = {"batch": batch, "threads": threads, "repeats": repeats, "model": str(export_dir)}
        if torch_rows is not None:
            rows += torch_rows(base, str(ckpt))
        for key, entry in manifest.models.items():
            if entry.format == "onnx" and entry.precision in ("fp32", "int8"):
                onnx = str(export_dir / entry.file.path)
                label = f"onnxruntime {entry.precision}"
                rows.append({**base, "runtime": "onnxruntime", "onnx": onnx, "label": label, "key": key})
                rows += _openvino_rows(base, onnx, key, entry.precision)
    return rows


def _openvino_rows(base: dict[str, Any], onnx: str, key: str, precision: str) -> list[dict[str, Any]]:
    """OpenVINO CPU rows when ``openvino`` is installed: FP32 with hint f32, and the CPU's default precision."""
    if importlib.util.find_spec("openvino") is None:
        return []
    row = {**base, "runtime": "openvino", "onnx": onnx, "key": key}
    rows = [{**row, "precision_hint": None, "label": f"openvino {precision} (default precision)"}]
    if precision == "fp32":
        rows.insert(0, {**row, "precision_hint": "f32", "label": "openvino fp32 (hint f32)"})
    return rows


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
    from ..analyzer import Analyzer

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
    inference vs compiled into heads. Registered by the training stage (``[zeroshot]`` extra)."""
    return load_plugin("bench", "zeroshot", "zeroshot")(clip, prompts)


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


def auto_choice(export_dir: Path, manifest: Any) -> dict[str, Any]:
    """What ``Analyzer(model, backend="auto")`` runs on this machine, and why (its cache included)."""
    from ..auto.choice import choose_cpu_path

    try:
        choice = choose_cpu_path(export_dir, manifest)
    except (FaceSdkError, OSError, RuntimeError, ValueError) as exc:  # the rows stand; the report says why
        log.warning("backend auto could not choose: %s", exc)
        return {"choice": None, "reason": f"{type(exc).__name__}: {exc}", "cached": False}
    return {"choice": choice.path.name, "reason": choice.reason, "cached": choice.cached}


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
    results = alternate_rounds(rows, functools.partial(run_in_child, WORKER), rounds=2)
    latency = summarise(results, reference=REFERENCE_ROW)
    for row in latency:  # the name the report has always used for the ratio
        if "ratio" in row:
            row["vs_onnxruntime_fp32"] = row["ratio"]
    report = {
        "cpu": cpu_info(),
        "machine": machine_info(threads),
        "threads": threads,
        "export": str(export_dir),
        "checkpoint": str(ckpt) if ckpt else None,
        "complexity": _complexity_table(manifest),
        "latency": latency,
        "end_to_end": _end_to_end(export_dir, Path(video) if video else None, frames, detector),
        "auto": auto_choice(export_dir, manifest),
        "zeroshot": zeroshot,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    chart = {
        f"batch {b}: p50 latency (ms)": sorted(
            ((r["label"], r["p50_ms"]) for r in latency if r["batch"] == b and r["p50_ms"]),
        )
        for b in sorted({r["batch"] for r in latency})
    }
    write_report(out_dir, "bench", report, render_markdown(report), chart, "ms")
    return report


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    lines = [
        "# facesdk bench",
        "",
        f"CPU: {describe_cpu(report['cpu'])}; "
        f"{report['threads']} threads per runtime. Each row ran in its own process, twice, in alternating order; "
        "the ratio is the median of the per-round ratios to ONNX Runtime FP32; peak RSS is the row's "
        "process at its largest (getrusage), imports and runtime included.",
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
            "| " + " | ".join([row["model"], *(fmt(row.get(k)) for k in keys)]) + " |"
            for row in report["complexity"]
        ]
        lines.append("")
    lines += [
        "## Latency",
        "",
        "| runtime | batch | p50 ms | p95 ms | ms per face | vs ORT fp32 | peak RSS MiB | samples |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(report["latency"], key=lambda r: (r["batch"], r["label"])):
        label = row["label"] + (
            f" [runs {row['inference_precision']}]" if row.get("inference_precision") else ""
        )
        cells = [label, row["batch"], row["p50_ms"], row["p95_ms"], row["per_face_ms"]]
        cells += [row.get("vs_onnxruntime_fp32"), row.get("peak_rss_mib"), row["samples"]]
        error = f" error: {row['error']}" if row["error"] else ""
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |" + error)
    auto = report.get("auto")
    if auto:
        chosen = f"**{auto['choice']}**" if auto["choice"] else "nothing"
        lines += ["", f'`backend="auto"` runs {chosen} here: {auto["reason"]}']
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


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=False, help="export directory")
    parser.add_argument("--ckpt", help="checkpoint directory (adds torch plain/unmerged/merged rows)")
    parser.add_argument("--out", default="bench", help="output directory for bench.json/.md/.png")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--threads", type=positive_int, default=2, help="threads per runtime (default 2)")
    parser.add_argument(
        "--repeats", type=positive_int, default=10, help="timed calls per row and batch (default 10)"
    )
    parser.add_argument("--video", help="a video for the end-to-end stage split")
    parser.add_argument(
        "--frames", type=positive_int, default=60, help="frames of --video to analyse (default 60)"
    )
    parser.add_argument("--detector", help="path to the YuNet detector model")
    parser.add_argument(
        "--zeroshot-clip",
        metavar="NAME",
        help="open_clip model (e.g. PE-Core-T-16-384): params and GFLOPs with the text encoder at "
        "inference vs compiled into heads",
    )
    parser.add_argument("--zeroshot-prompts", help="prompts YAML for --zeroshot-clip (default prompts)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "facesdk bench") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure_row(json.loads(args.worker))))
        return 0
    if not args.model and not args.zeroshot_clip:
        parser.error("--model EXPORT_DIR (or --zeroshot-clip NAME) is required")
    args.batches = _batches(args.batches)
    check_output_dir(args.out, [args.model, args.ckpt, args.video, args.detector, args.zeroshot_prompts],
                     reuse=True, manifests=("bench.json",))  # fmt: skip
    staged = StagedDir(args.out, force=True)  # a failed or interrupted run leaves --out as it was
    with staged as stage:
        code = _run(args, stage)
        staged.commit(swap=merge_into)  # an earlier report's files replaced, anything else kept
    return code


def _batches(text: str) -> list[int]:
    """``--batches 1,8`` as integers of at least 1, in the order given."""
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--batches must be comma-separated integers, got {text!r}") from None
    if not batches or min(batches) < 1:
        raise ConfigError(f"--batches must be batch sizes of at least 1 (e.g. 1,8), got {text!r}")
    return batches


def _run(args: argparse.Namespace, out: Path) -> int:
    """Measure and write the report into ``out`` (the staging folder of ``--out``)."""
    zeroshot = zeroshot_complexity(args.zeroshot_clip, args.zeroshot_prompts) if args.zeroshot_clip else None
    if not args.model:
        text = "\n".join(["# facesdk bench", "", *_zeroshot_lines(zeroshot)])  # type: ignore[arg-type]
        write_report(out, "bench", {"zeroshot": zeroshot}, text)
        print(text)
        return 0
    report = run_bench(
        args.model, out, args.ckpt, args.batches, args.threads, args.repeats,
        args.video, args.frames, args.detector, zeroshot,
    )  # fmt: skip
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    from ..errors import run_guarded

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(run_guarded("python -m facesdk.bench.cli", lambda: main(prog="python -m facesdk.bench.cli")))
