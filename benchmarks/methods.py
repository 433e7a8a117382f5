"""Every adaptation method side by side: training cost, accuracy after N steps, deployment cost.

Trains each method of the registry (plus ``full`` with gradient checkpointing) on one
synthetic set and one reduced backbone with facesdk's own trainer, exports each checkpoint
(fp32 ONNX, adapters merged; MTLoRA keeps one branch per task) and times the exports with
ONNX Runtime. Writes ``docs/benchmarks/methods.md`` and ``methods.png`` beside it.

Each method trains in a fresh child process, so its peak resident set size (``ru_maxrss``)
is its own; one more child, without torch, times every export (see :func:`latency_child`).

    python -m benchmarks.methods                         # about 10 minutes on 2 shared CPU cores
    python -m benchmarks.methods --steps 20 --methods lora,mtlora --out /tmp/m.md
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from facesdk.bench import time_calls

from .common import ROOT, cpu_session
from .methods_report import TASKS, cpu_info, plot, render

log = logging.getLogger("methods")

ADAPTER = {"rank": 16, "alpha": 32, "lora_plus_ratio": 4}
RUNS: dict[str, dict[str, Any]] = {
    "linear_probe": {"method": {"name": "linear_probe"}},
    "norm": {"method": {"name": "norm"}},
    "vera": {"method": {"name": "vera", "rank": 256}},
    "lora": {"method": {"name": "lora", **ADAPTER}},
    "dora": {"method": {"name": "dora", **ADAPTER}},
    "dora + zero-shot heads": {"method": {"name": "dora", **ADAPTER}, "zeroshot": True},
    "mtlora": {
        "method": {"name": "mtlora", **ADAPTER, "task_rank": 16, "task_alpha": 32, "branch_blocks": 1}
    },
    "partial": {"method": {"name": "partial", "blocks": 1, "backbone_lr_mult": 0.1}},
    "galore": {"method": {"name": "galore", "base": "full", "rank": 32, "update_proj_gap": 50}},
    "full": {"method": {"name": "full"}},
    "full + checkpointing": {"method": {"name": "full"}, "runtime": {"grad_checkpointing": True}},
}
"""Label -> config sections that differ between runs (everything else is shared)."""


def _rss_mib() -> float:
    """Resident set size now (Linux ``/proc/self/statm``), in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _slug(label: str) -> str:
    return label.replace(" + ", "_").replace(" ", "_")


def train_config(label: str, args: argparse.Namespace) -> dict[str, Any]:
    """The training config of one run: shared data, backbone and schedule, the run's own method."""
    run = RUNS[label]
    model: dict[str, Any] = {
        "backbone": args.backbone,
        "weights": "random",
        "kwargs": {"img_size": args.img_size, "depth": args.depth},
    }
    if run.get("zeroshot"):
        model.update(heads_init="zeroshot", zeroshot_checkpoint=str(zeroshot_checkpoint(args)))
    return {
        "seed": 0,
        "model": model,
        "method": run["method"],
        "data": {
            "train": str(args.work / "data" / "train.csv"),
            "val": str(args.work / "data" / "val.csv"),
            "sampler": "balanced",
            "samples_per_epoch": args.steps * args.batch,
        },
        "optim": {
            "epochs": 1,
            "batch_size": args.batch,
            "lr": args.lr,
            "weight_decay": 0.01,
            "warmup_steps": max(1, args.steps // 10),
        },
        "runtime": {
            "device": "cpu",
            "threads": args.threads,
            "save_every": args.steps + 1,  # only the end-of-epoch state save
            **run.get("runtime", {}),
        },
    }


ZEROSHOT_CLIP = "PE-Core-T-16-384"
"""open_clip model whose vision tower is the benchmark's backbone (``vit_pe_core_tiny_patch16_384``)."""


def zeroshot_checkpoint(args: argparse.Namespace) -> Path:
    """The zero-shot heads of the ``zero-shot heads`` row, compiled once for the reduced tower.

    ``facesdk zeroshot build``'s compiler with ``vision_kwargs`` = the benchmark's size and
    depth, random init: the text tower is random too, so the heads carry no knowledge here;
    the row shows the path and its cost, not the head start a pretrained model gives.
    """
    out = args.work / "zeroshot"
    if not (out / "checkpoint.json").is_file():
        if args.backbone != "vit_pe_core_tiny_patch16_384":
            raise SystemExit(f"the zero-shot row needs the backbone of {ZEROSHOT_CLIP}, not {args.backbone}")
        import torch

        from facesdk.training.zeroshot.compile import build_zeroshot_checkpoint

        torch.manual_seed(0)  # the random-init CLIP model, hence the heads, the same in every run
        kwargs = {"img_size": args.img_size, "depth": args.depth}
        build_zeroshot_checkpoint(ZEROSHOT_CLIP, out, vision_kwargs=kwargs)
    return out


def saved_activations_mib(model: Any, batch: Any) -> float:
    """MiB of activations autograd keeps for backward after one training forward pass.

    Every tensor saved for backward passes through a ``saved_tensors_hooks`` pack hook;
    distinct storages that are not parameters are summed. Gradient checkpointing keeps only
    each block's input (its own hooks hide the rest), which is what it saves.
    """
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(batch)
    return sum(seen.values()) / 2**20


def train_child(label: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one run, record its cost, export it; runs in its own process."""
    import torch

    from facesdk.training.config import config_from_mapping
    from facesdk.training.trainer import Trainer

    class TimedTrainer(Trainer):
        """Times the training epochs (data loading, forward, backward, step), not evaluation."""

        train_seconds = 0.0

        def _train_epoch(self, progress: dict[str, Any]) -> None:
            start = time.perf_counter()
            super()._train_epoch(progress)
            self.train_seconds += time.perf_counter() - start

    config = config_from_mapping(train_config(label, args))
    out = args.work / "runs" / _slug(label)
    rss_before = _rss_mib()
    trainer = TimedTrainer(config, out)
    summary = trainer.run()
    peak = _peak_rss_mib()  # before the export, which would raise the high-water mark
    optimizer_bytes = sum(
        t.numel() * t.element_size()
        for state in trainer.optimizer.state.values()
        for t in state.values()
        if isinstance(t, torch.Tensor) and t.ndim > 0
    )
    batch = torch.stack([trainer.train_set[i][0] for i in range(args.batch)])
    activations = saved_activations_mib(trainer.model, batch)
    ckpt = out / "checkpoint"
    manifest = json.loads((ckpt / "checkpoint.json").read_text())
    record: dict[str, Any] = {
        "label": label,
        "method": config.method.name,
        "config": dict(config.method.config),
        "trainable": manifest["params"]["trainable"],
        "total": manifest["params"]["total"],
        "trainable_share": manifest["training"]["trainable_share"],
        "checkpoint_bytes": sum(f.stat().st_size for f in ckpt.iterdir()),
        "peak_rss_mib": peak,
        "rss_increase_mib": peak - rss_before,
        "optimizer_state_mib": optimizer_bytes / 2**20,
        "activations_mib": activations,
        "steps": summary["steps"],
        "depth": args.depth,
        "img_size": args.img_size,
        "step_ms": 1000 * trainer.train_seconds / max(1, summary["steps"]),
        "val": summary["final"],
    }
    record.update(export_child(ckpt, args.work / "exports" / _slug(label)))
    return record


def export_child(ckpt: Path, out: Path) -> dict[str, Any]:
    """Export a checkpoint to fp32 ONNX (max batch 8) and read its complexity and parity."""
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export

    manifest = run_export(ExportOptions(ckpt=ckpt, out=out, max_batch=8, force=True))
    c = manifest.complexity
    return {
        "onnx": str(out / manifest.model("onnx", "fp32").file.path),
        "gflops_merged": c["merged"]["gflops"],
        "gflops_unmerged": c["unmerged"]["gflops"],
        "gflops_onnx": c["onnx"]["gflops"],
        "params_merged": c["merged"]["params"],
        "merge_max_abs_diff": manifest.parity["merge"]["max_abs_diff"],
        "onnx_max_abs_diff": manifest.parity["onnx_vs_torch"]["max_abs_diff"],
    }


def latency_child(paths: list[str], threads: int, iters: int, rounds: int = 25) -> list[dict[str, float]]:
    """ONNX Runtime latency (ms) of each model at batch 1 and 8, in a process without torch.

    The models take turns (``rounds`` turns), so a burst of load from other jobs hits them
    all alike. Idle ORT threads do not spin (``session.intra_op.allow_spinning=0``), so
    sessions sharing the process do not slow each other. On a shared machine the median
    still swung up to 2x between two sessions of the same file; the 10th percentile (``*_ms``)
    stayed within about 5 %, so it is the figure reported, with the median beside it.
    """
    import numpy as np

    sessions = [cpu_session(p, threads) for p in paths]
    size = sessions[0].get_inputs()[0].shape[2:]
    out: list[dict[str, float]] = [{} for _ in paths]
    for batch, runs in ((1, iters), (8, iters // 2)):
        x = np.random.default_rng(0).standard_normal((batch, 3, *size)).astype(np.float32)
        times: list[list[float]] = [[] for _ in paths]
        calls = [functools.partial(session.run, None, {"input": x}) for session in sessions]
        for call in calls:
            time_calls(call, warmup=3, repeats=0)
        for _ in range(rounds):
            for call, record in zip(calls, times, strict=True):
                record += time_calls(call, warmup=0, repeats=max(1, round(runs / rounds)))
        for result, record in zip(out, times, strict=True):
            result[f"b{batch}_runs"] = len(record)
            result[f"b{batch}_ms"] = float(np.percentile(record, 10))
            result[f"b{batch}_median_ms"] = float(np.median(record))
    return out


def full_size_child(args: argparse.Namespace) -> dict[str, Any]:
    """GFLOPs of the unreduced backbone (native input size and depth): merged plain vs merged MTLoRA."""
    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.export.flops import count_params, torch_flops
    from facesdk.export.merge import merge_adapters
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import build_model

    backbone = BackboneSpec(args.backbone, "random", {})
    heads = {t.name: HeadSpec() for t in DEFAULT_TASKS}
    out: dict[str, Any] = {}
    for key, spec in (("plain", {"name": "linear_probe"}), ("mtlora", RUNS["mtlora"]["method"])):
        options = {k: v for k, v in spec.items() if k != "name"}
        method = MethodSpec(spec["name"], options)
        model, pre, _ = build_model(backbone, DEFAULT_TASKS, heads, method, load_weights=False)
        merged = merge_adapters(model)
        out[key] = {"gflops": torch_flops(merged, pre.input_size) / 1e9, "params": count_params(merged)}
        if key == "plain":
            out["input_size"], out["depth"] = list(pre.input_size), len(merged.backbone.blocks)
    return out


def _child(*extra: str) -> Any:
    """Run this script with ``extra`` in a fresh process; return the JSON of its last line.

    OpenMP threads wait passively: spinning ones slowed 2-thread training steps 5-8x on a
    machine shared with other jobs (measured while writing this benchmark).
    """
    cmd = [sys.executable, "-m", __spec__.name, *extra]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _shared_args(args: argparse.Namespace) -> list[str]:
    return [
        f"--backbone={args.backbone}", f"--img-size={args.img_size}", f"--depth={args.depth}",
        f"--steps={args.steps}", f"--batch={args.batch}", f"--lr={args.lr}", f"--threads={args.threads}",
        f"--count={args.count}", f"--work={args.work}",
    ]  # fmt: skip


def run_all(args: argparse.Namespace, labels: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate the data, train/export every run, time every export, count full-size FLOPs."""
    from facesdk.training.synthetic import SynthOptions, generate_synthetic

    generate_synthetic(
        args.work / "data", SynthOptions(count=args.count, missing=0.3, seed=0, size=args.img_size)
    )
    if any(RUNS[label].get("zeroshot") for label in labels):
        # In a child of its own: a process's peak RSS survives fork and exec on Linux, so CLIP
        # built here would become every training child's ru_maxrss.
        _child(*_shared_args(args), "--zeroshot-child")
    results = []
    for label in labels:
        start = time.perf_counter()
        results.append(_child(*_shared_args(args), "--child", label))
        r = results[-1]
        log.info(
            "%-22s %5.2f%% trainable, %.0f ms/step, val acc %s, %.4f GFLOPs (%.0f s)",
            label, 100 * r["trainable_share"], r["step_ms"],
            "/".join(f"{r['val'][t]['acc']:.2f}" for t in TASKS), r["gflops_onnx"], time.perf_counter() - start,
        )  # fmt: skip
    onnx = ",".join(r["onnx"] for r in results)
    for r, lat in zip(
        results, _child("--latency", onnx, f"--threads={args.threads}", f"--iters={args.iters}"), strict=True
    ):
        r.update(lat)
    full = _child(*_shared_args(args), "--full-size")
    return results, full


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="vit_pe_core_tiny_patch16_384")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--steps", type=int, default=80, help="optimizer steps per method")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--count", type=int, default=2000, help="synthetic images (train + validation)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--iters", type=int, default=100, help="timed ONNX Runtime runs per model at batch 1 (half at 8)"
    )
    p.add_argument("--methods", default=",".join(RUNS), help=f"comma list of {list(RUNS)}")
    p.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks/methods.md")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--latency", default=None, help=argparse.SUPPRESS)
    p.add_argument("--full-size", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--zeroshot-child", action="store_true", help=argparse.SUPPRESS)
    return p


def main() -> int:
    args = _parser().parse_args()
    if args.zeroshot_child:
        print(json.dumps({"checkpoint": str(zeroshot_checkpoint(args))}))
        return 0
    if args.child or args.full_size:
        logging.basicConfig(level=logging.WARNING)
        result = train_child(args.child, args) if args.child else full_size_child(args)
        print(json.dumps(result))
        return 0
    if args.latency:
        print(json.dumps(latency_child(args.latency.split(","), args.threads, args.iters)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    labels = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in labels if m not in RUNS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {list(RUNS)}")
    log.info("CPU: %s (%s)", *cpu_info())
    start, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="facesdk-methods-") as tmp:
        args.work = (args.work or Path(tmp)).resolve()
        results, full = run_all(args, labels)
    wall, args.load = time.perf_counter() - start, (load, os.getloadavg()[0])
    from facesdk.contract.manifest_io import atomic_write_bytes

    (args.out.parent).mkdir(parents=True, exist_ok=True)
    plot(results, args.out.with_suffix(".png"))
    cmd = "python -m benchmarks.methods" + "".join(f" {a}" for a in sys.argv[1:])
    atomic_write_bytes(args.out, render(results, full, args, wall, cmd).encode())
    log.info("wrote %s and %s (%.1f min)", args.out, args.out.with_suffix(".png").name, wall / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
