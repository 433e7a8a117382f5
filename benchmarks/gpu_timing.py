"""Time torch, ONNX Runtime and TensorRT on an export directory; print a Markdown table.

Used by ``benchmarks/gpu_check.sh`` on a GPU machine. Each runtime runs in its own process
(ONNX Runtime's idle threads slow other runtimes in the same process); medians of ``--iters``
calls after ``--warmup`` calls, batches 1 and 32 by default.

    python -m benchmarks.gpu_timing --export DIR --ckpt DIR [--batches 1,32]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from facesdk.bench import time_calls

from .common import ROOT

__all__ = ["time_call", "main"]

log = logging.getLogger("gpu_timing")


def time_call(
    call: Callable[[], object], warmup: int, iters: int, sync: Callable[[], None] = lambda: None
) -> float:
    """Median milliseconds of ``call`` (``sync`` waits for asynchronous work, e.g. CUDA)."""

    def synced() -> None:
        call()
        sync()

    return statistics.median(time_calls(synced, warmup, iters))


def _runner(
    kind: str, export: Path, ckpt: Path, batch: int
) -> tuple[Callable[[], object], Callable[[], None]]:
    from facesdk.contract.export_manifest import load_export_manifest

    manifest = load_export_manifest(export)
    h, w = manifest.preprocess.input_size
    x = np.random.default_rng(0).standard_normal((batch, 3, h, w)).astype(np.float32)
    if kind.startswith("torch"):
        import torch

        from facesdk.training import load_checkpoint
        from facesdk.training.merging import merge_adapters

        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = merge_adapters(load_checkpoint(ckpt)).to(device).eval()
        if kind == "torch-fp16":
            model = model.half()
        xt = torch.from_numpy(x).to(device, torch.float16 if kind == "torch-fp16" else torch.float32)

        def call() -> object:
            with torch.inference_mode():
                return model(xt)

        return call, (torch.cuda.synchronize if device == "cuda" else lambda: None)
    if kind.startswith("ort"):
        from facesdk.backends.onnxruntime import create_session

        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if kind == "ort-cuda"
            else ["CPUExecutionProvider"]
        )
        session = create_session(export / manifest.model("onnx", "fp32").file.path, providers)
        return (lambda: session.run(None, {"input": x})), (lambda: None)
    from facesdk.backends.tensorrt import TensorRTBackend

    precision = kind.split("-")[1]
    engine = TensorRTBackend(manifest, export / manifest.model("engine", precision).file.path)
    return (lambda: engine.run(x)), (lambda: None)  # run() synchronizes its stream


def _one(args: argparse.Namespace) -> int:
    call, sync = _runner(args.kind, args.export, args.ckpt, args.batch)
    print(
        json.dumps(
            {"kind": args.kind, "batch": args.batch, "ms": time_call(call, args.warmup, args.iters, sync)}
        )
    )
    return 0


def _available(export: Path) -> list[str]:
    from facesdk.contract.export_manifest import load_export_manifest

    models = load_export_manifest(export, verify=False).models
    import onnxruntime as ort

    kinds = ["torch-fp32", "torch-fp16", "ort-cpu"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        kinds.append("ort-cuda")
    return kinds + [f"trt-{p}" for p in ("fp16", "int8") if f"engine-{p}" in models]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.kind:
        return _one(args)
    rows: dict[str, dict[int, str]] = {}
    batches = [int(b) for b in args.batches.split(",")]
    for kind in _available(args.export):
        for batch in batches:
            cmd = [sys.executable, "-m", "benchmarks.gpu_timing", "--export", str(args.export), "--ckpt", str(args.ckpt), "--kind", kind,
                   "--batch", str(batch), "--warmup", str(args.warmup), "--iters", str(args.iters)]  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if result.returncode == 0:
                rows.setdefault(kind, {})[batch] = f"{json.loads(result.stdout.splitlines()[-1])['ms']:.2f}"
            else:
                rows.setdefault(kind, {})[batch] = "failed"
                log.warning("%s batch %d failed: %s", kind, batch, result.stderr.strip().splitlines()[-1:])
    print("| runtime | " + " | ".join(f"batch {b} (ms)" for b in batches) + " |")
    print("|---|" + "---|" * len(batches))
    for kind, cells in rows.items():
        print(f"| {kind} | " + " | ".join(cells.get(b, "-") for b in batches) + " |")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
