"""Scale-out benchmark: Triton serving and many cameras on one engine.

1. Serving: a real Triton server on loopback (``facesdk.serving``), the pipeline model with the
   Python backbone; throughput and p50/p95 latency against concurrent clients, and the batch
   sizes the dynamic batcher formed (from the server's statistics endpoint).
2. Multi-stream: ``Analyzer.streams`` over 1, 2 and 4 sources against one Analyzer per source
   (each in its own thread), frames per second.
3. Distributed training: a slot for :func:`bench_training` (owned by the training team).

Writes ``docs/benchmarks/scale.md`` and PNG plots beside it. Only measured numbers.

    python benchmarks/scale.py --model EXPORT_DIR --detector YUNET.onnx
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from facesdk import Analyzer
from facesdk.bench import cpu_info

CLIENTS = (1, 2, 4, 8, 16)
SOURCES = (1, 2, 4)


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[..., ::-1])


def bench_serving(
    model: Path, detector: Path, requests: int, instances: int, delay_us: int
) -> list[dict[str, Any]]:
    """Throughput, latency and formed batch sizes of the Triton pipeline per number of clients."""
    from facesdk.serving import (
        BACKBONE_PYTHON,
        PIPELINE,
        Client,
        RepositoryConfig,
        TritonServer,
        batch_sizes,
        write_repository,
    )

    repo = Path(tempfile.mkdtemp(prefix="facesdk-scale-repo-"))
    write_repository(model, repo, RepositoryConfig("python", instances, delay_us), detector)
    frame = astronaut_bgr()
    rows = []
    with TritonServer(repo, [PIPELINE, BACKBONE_PYTHON]) as server:
        with Client(server.grpc_url, "grpc") as warm:
            for _ in range(4):
                warm.analyze(frame)
        for clients in CLIENTS:
            with Client(server.http_url) as probe:
                before = batch_sizes(probe.statistics(BACKBONE_PYTHON), BACKBONE_PYTHON)
            per = max(requests // clients, 4)
            latencies: list[float] = []
            lock = threading.Lock()

            def worker(
                _: int, per: int = per, latencies: list[float] = latencies, lock: threading.Lock = lock
            ) -> None:
                with Client(server.http_url) as client:
                    for _ in range(per):
                        start = time.perf_counter()
                        client.analyze(frame)
                        with lock:
                            latencies.append((time.perf_counter() - start) * 1000.0)

            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(worker, range(clients)))
            wall = time.perf_counter() - start
            with Client(server.http_url) as probe:
                after = batch_sizes(probe.statistics(BACKBONE_PYTHON), BACKBONE_PYTHON)
            formed = {
                b: after.get(b, 0) - before.get(b, 0) for b in after if after.get(b, 0) - before.get(b, 0)
            }
            rows.append(
                {
                    "clients": clients,
                    "requests": len(latencies),
                    "fps": len(latencies) / wall,
                    "p50": float(np.percentile(latencies, 50)),
                    "p95": float(np.percentile(latencies, 95)),
                    "batches": dict(sorted(formed.items())),
                }
            )
            print(rows[-1], flush=True)
    return rows


def _frames(image: np.ndarray, count: int) -> list[np.ndarray]:
    return [np.roll(image, 3 * i, axis=1) for i in range(count)]


def bench_multistream(model: Path, detector: Path, frames: int) -> list[dict[str, Any]]:
    """Frames per second: one Analyzer over N sources (shared batches) vs N Analyzers in N threads."""
    image = astronaut_bgr()
    rows = []
    for n in SOURCES:
        with Analyzer(model, "onnxruntime", detector) as analyzer:
            analyzer.analyze(image)
            start = time.perf_counter()
            multi = analyzer.streams([_frames(image, frames) for _ in range(n)], track=False)
            done = sum(1 for _ in multi)
            shared = done / (time.perf_counter() - start)
            mean_batch = float(np.mean(multi.batches))
        analyzers = [Analyzer(model, "onnxruntime", detector) for _ in range(n)]
        for a in analyzers:
            a.analyze(image)
        start = time.perf_counter()

        def run(a: Analyzer) -> int:
            return sum(1 for _ in a.stream(_frames(image, frames), track=False))

        with ThreadPoolExecutor(n) as pool:
            done = sum(pool.map(run, analyzers))
        separate = done / (time.perf_counter() - start)
        for a in analyzers:
            a.close()
        rows.append(
            {"sources": n, "shared_fps": shared, "separate_fps": separate, "mean_faces_per_call": mean_batch}
        )
        print(rows[-1], flush=True)
    return rows


def bench_training(args: argparse.Namespace) -> str | None:
    """Slot for the distributed-training part (another team adds it); returns a Markdown section or None."""
    return None


def _plots(out: Path, serving: list[dict[str, Any]], multi: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    c = [r["clients"] for r in serving]
    ax1.plot(c, [r["fps"] for r in serving], "o-")
    ax1.set(
        xscale="log", xlabel="concurrent clients", ylabel="frames / s", title="Triton pipeline throughput"
    )
    ax1.set_xticks(c, [str(x) for x in c])
    ax2.plot(c, [r["p50"] for r in serving], "o-", label="p50")
    ax2.plot(c, [r["p95"] for r in serving], "s-", label="p95")
    ax2.set(xscale="log", xlabel="concurrent clients", ylabel="latency (ms)", title="Triton latency")
    ax2.set_xticks(c, [str(x) for x in c])
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out / "scale_serving.png", dpi=100)
    fig, ax = plt.subplots(figsize=(5, 4))
    s = np.array([r["sources"] for r in multi])
    ax.bar(s - 0.2, [r["shared_fps"] for r in multi], 0.4, label="one Analyzer, streams()")
    ax.bar(s + 0.2, [r["separate_fps"] for r in multi], 0.4, label="one Analyzer per source")
    ax.set(xlabel="sources", ylabel="frames / s (all sources)", title="Many cameras, one engine")
    ax.set_xticks(s)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scale_multistream.png", dpi=100)


def write_doc(
    path: Path, args: argparse.Namespace, serving: list[dict[str, Any]], multi: list[dict[str, Any]]
) -> None:
    lines = [
        "# Scale-out benchmark",
        "",
        f"Generated by `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`.",
        f"CPU: {cpu_info()}. Model: `{args.model}`. One frame (scikit-image astronaut, 512x512, one face) per request.",
        "",
        "## Triton (loopback, Python-backend pipeline + Python backbone)",
        "",
        f"Repository: `--backend python --instances {args.instances} --max-queue-delay-us {args.delay_us}`; "
        "HTTP clients, each its own thread. Batches: backbone executions by batch size during that row "
        "(server statistics endpoint).",
        "",
        "| clients | requests | frames/s | p50 ms | p95 ms | backbone batches formed (size: count) |",
        "|---|---|---|---|---|---|",
    ]
    for r in serving:
        formed = ", ".join(f"{b}: {n}" for b, n in r["batches"].items())
        lines.append(
            f"| {r['clients']} | {r['requests']} | {r['fps']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | {formed} |"
        )
    lines += [
        "",
        "![serving](scale_serving.png)",
        "",
        "## Multi-stream (one engine)",
        "",
        f"{args.frames} frames per source; all sources' frames per second.",
        "",
        "| sources | streams(): frames/s | one Analyzer per source: frames/s | mean faces per backbone call |",
        "|---|---|---|---|",
    ]
    for r in multi:
        lines.append(
            f"| {r['sources']} | {r['shared_fps']:.1f} | {r['separate_fps']:.1f} | {r['mean_faces_per_call']:.2f} |"
        )
    lines += ["", "![multistream](scale_multistream.png)", ""]
    training = bench_training(args)
    lines += (
        [training]
        if training
        else ["## Distributed training", "", "Not measured yet (slot: `bench_training`).", ""]
    )
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="export directory (default: a tiny test export)")
    parser.add_argument("--detector", required=True, help="YuNet model file")
    parser.add_argument("--requests", type=int, default=64, help="requests per client-count row")
    parser.add_argument("--frames", type=int, default=30, help="frames per source")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--delay-us", type=int, default=2000)
    parser.add_argument("--doc", default="docs/benchmarks/scale.md")
    parser.add_argument("--skip-serving", action="store_true")
    args = parser.parse_args(argv)
    if args.model is None:
        from facesdk.testing import make_tiny_export

        args.model = tempfile.mkdtemp(prefix="facesdk-tiny-")
        make_tiny_export(args.model)
    model, detector = Path(args.model), Path(args.detector)
    serving = (
        []
        if args.skip_serving
        else bench_serving(model, detector, args.requests, args.instances, args.delay_us)
    )
    multi = bench_multistream(model, detector, args.frames)
    doc = Path(args.doc)
    doc.parent.mkdir(parents=True, exist_ok=True)
    if serving:
        _plots(doc.parent, serving, multi)
    write_doc(doc, args, serving, multi)
    print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
