"""The backbone alone: crops a second with one ONNX Runtime call at a time against two at once.

One call of a ViT backbone on a small CPU leaves gaps between its operators' parallel sections;
a second call at the same time fills them. This measures what the engine's ``parallel_calls``
buys, without a frame path: for each setting, as many threads as the engine runs calls at once
send one crop per call through ``Engine.infer`` for ``--seconds``, settings alternating over
``--rounds``; crops a second, ms per call and the CPU cores the process used. Writes
``docs/benchmarks/parallel_calls.md`` (and ``.json``)::

    python -m benchmarks.parallel_calls            # builds the random-init edge export (needs [train,export])
    python -m benchmarks.parallel_calls --model EXPORT_DIR
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facesdk import Analyzer
from facesdk.bench import cpu_info, describe_cpu

from .common import DOCS
from .stream import random_export

log = logging.getLogger("parallel_calls_bench")

SETTINGS = (
    ("one call at a time, ONNX Runtime's threads", {"parallel_calls": 1}),
    ("two calls at once, ONNX Runtime's threads (the default)", {"parallel_calls": 2}),
    ("two calls at once, one thread each", {"parallel_calls": 2, "intra_op_threads": 1}),
    ("one call at a time, one thread", {"parallel_calls": 1, "intra_op_threads": 1}),
)


def hammer(analyzer: Analyzer, crop: np.ndarray, seconds: float) -> dict[str, float]:
    """Calls of one crop from ``engine.parallel_calls`` threads for ``seconds``."""
    engine = analyzer.engine
    engine.infer([crop])  # warm-up
    stop = time.perf_counter() + seconds
    times: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            engine.infer([crop])
            with lock:
                times.append(time.perf_counter() - start)

    threads = [threading.Thread(target=work) for _ in range(engine.parallel_calls)]
    cpu, wall = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "crops_per_s": len(times) / wall,
        "ms_per_call": 1000.0 * float(np.median(times)),
        "cores": cpu / wall,
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        "# The backbone alone: one call at a time or two at once",
        "",
        f"Measured by `{report['command']}` on {report['cpu_line']}: ONNX Runtime FP32 on the CPU, "
        f"model {report['model']}, one crop per call from as many threads as calls may run at once, "
        f"{report['seconds']:g} s per setting after one warm-up call, {report['rounds']} round(s) in alternating "
        "order; each cell lists every round. The stream engine's default on a CPU is two calls at once "
        '(`parallel_calls`, docs/sdk.md "Threads").',
        "",
        "| setting | crops/s | ms per call (median) | cores busy |",
        "|---|---|---|---|",
    ]
    for row in report["rows"]:
        runs = row["runs"]
        cells = [
            ", ".join(f"{r[k]:.{d}f}" for r in runs)
            for k, d in (("crops_per_s", 1), ("ms_per_call", 0), ("cores", 2))
        ]
        lines.append(f"| {row['setting']} | {' | '.join(cells)} |")
    base = report["rows"][0]["runs"]
    best = report["rows"][1]["runs"]
    ratios = [b["crops_per_s"] / a["crops_per_s"] for a, b in zip(base, best, strict=True)]
    lines += [
        "",
        f"Two calls at once against one at a time, round by round: {', '.join(f'{r:.2f}x' for r in ratios)} the crops a second.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", type=Path, default=None, help="an export directory (default: build the edge export)"
    )
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per setting and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=DOCS / "parallel_calls.md")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1:
        p.error("--seconds must be > 0 and --rounds >= 1")
    cpu = cpu_info()
    report: dict[str, Any] = {
        "command": "python -m benchmarks.parallel_calls" + (" --model EXPORT_DIR" if args.model else ""),
        "cpu": cpu,
        "cpu_line": describe_cpu(cpu),
        "model": "given export"
        if args.model
        else "vit_pe_core_tiny_patch16_384 at 384 px, random init, fp32",
        "seconds": args.seconds,
        "rounds": args.rounds,
    }
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        export = args.model or random_export(Path(tmp), 384, None)
        made = [
            stack.enter_context(
                Analyzer(export, backend="onnxruntime", providers=["CPUExecutionProvider"], **opts)
            )
            for _, opts in SETTINGS
        ]
        h, w = made[0].manifest.preprocess.input_size
        crop = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        runs: list[list[dict[str, float]]] = [[] for _ in SETTINGS]
        for round_ in range(args.rounds):
            order = range(len(SETTINGS)) if round_ % 2 == 0 else reversed(range(len(SETTINGS)))
            for i in order:
                runs[i].append(hammer(made[i], crop, args.seconds))
                log.info("%s, round %d: %s", SETTINGS[i][0], round_ + 1, runs[i][-1])
    report["rows"] = [
        {"setting": name, "options": opts, "runs": r} for (name, opts), r in zip(SETTINGS, runs, strict=True)
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.out.write_text(render(report))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
