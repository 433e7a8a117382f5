"""Side-by-side training cost of LoRA, DoRA and full fine-tuning on one backbone (CPU).

Writes ``docs/benchmarks/training.md``: trainable parameters, checkpoint size, peak memory
and step time per method, measured in one run on the same inputs.

Memory: each method runs in a fresh child process and reports its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes the interpreter, torch and
the model), so the methods do not share a high-water mark.

    python benchmarks/train_methods.py [--img-size 64 --depth 2 --batch 16 --steps 10]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("lora", "dora", "full")
log = logging.getLogger("train_methods")


def cpu_info() -> tuple[str, str]:
    """CPU model name and its flags of interest (from /proc/cpuinfo where available)."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(
                    f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in have
                )
    except OSError:
        pass
    return model, flags


def _current_rss_mib() -> float:
    """Resident set size now (Linux ``/proc/self/statm``), in MiB."""
    import os

    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(method: str, args: argparse.Namespace) -> dict:
    """Build, train ``args.steps`` steps (after 2 warm-up steps), save a checkpoint; report numbers."""
    import torch

    from facesdk.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import build_model, get_method, save_checkpoint
    from facesdk.training.losses import MultiTaskLoss

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rss_before = _current_rss_mib()
    backbone = BackboneSpec(args.backbone, "random", {"img_size": args.img_size, "depth": args.depth})
    heads = {t.name: HeadSpec() for t in DEFAULT_TASKS}
    options = {"rank": args.rank, "lora_plus_ratio": 6} if method != "full" else {}
    model, pre, spec = build_model(backbone, DEFAULT_TASKS, heads, MethodSpec(method, options))
    impl = get_method(method)
    opt = impl.optimizer(impl.param_groups(model, spec.config, 1e-4, 0.05), spec.config, lr=1e-4)
    loss_fn = MultiTaskLoss(DEFAULT_TASKS)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size)
    y = torch.stack([torch.randint(0, t.num_classes, (args.batch,)) for t in DEFAULT_TASKS], 1)
    times = []
    for i in range(args.steps + 2):
        start = time.perf_counter()
        loss, _ = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = save_checkpoint(
            model,
            Path(tmp) / "c",
            backbone=backbone,
            preprocess=pre,
            tasks=DEFAULT_TASKS,
            method=spec,
            heads=heads,
        )
        size = sum(f.stat().st_size for f in (Path(tmp) / "c").iterdir())
    times.sort()
    return {
        "method": method,
        "trainable": manifest.params["trainable"],
        "total": manifest.params["total"],
        "checkpoint_bytes": size,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_increase_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before,
        "step_ms_median": 1000 * times[len(times) // 2],
        "step_ms_min": 1000 * times[0],
    }


def render(results: list[dict], args: argparse.Namespace) -> str:
    model, flags = cpu_info()
    import torch

    lines = [
        "# Training cost per method (CPU)",
        "",
        f"Measured by `python benchmarks/train_methods.py` on {time.strftime('%Y-%m-%d')}.",
        "",
        f"- Backbone: `{args.backbone}`, random init, **reduced** to `img_size={args.img_size}`, "
        f"`depth={args.depth}` (the full 384 px, 12-block model is too slow for 2 shared CPU cores).",
        f"- Batch {args.batch}, {args.steps} timed AdamW steps after 2 warm-up steps, fp32, "
        f"{args.threads} threads; LoRA/DoRA rank {args.rank} on the blocks' qkv/proj/fc1/fc2, LoRA+ ratio 6.",
        f"- CPU: {model}; flags: {flags or 'n/a'}; torch {torch.__version__}.",
        "- Peak memory: peak resident set size (`ru_maxrss`) of a fresh process per method, "
        "interpreter and libraries included; *training increase* = that peak minus the RSS just "
        "before the model is built (model, gradients, optimizer state, activations).",
        "- The machine was shared with other jobs; step times are indicative, the ratios matter.",
        "",
        "| method | trainable params | share | checkpoint | peak RSS | training increase | step time (median / min) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['method']} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.2f}% | "
            f"{r['checkpoint_bytes'] / 2**20:.2f} MiB | {r['peak_rss_mib']:.0f} MiB | {r['rss_increase_mib']:.0f} MiB | "
            f"{r['step_ms_median']:.0f} / {r['step_ms_min']:.0f} ms |"
        )
    lines += [
        "",
        "Checkpoints hold every weight (frozen backbone included), so their size is about the same "
        "for every method; adapters add their own matrices. LoRA/DoRA save memory on optimizer state "
        "and gradients, not on activations: at this reduced size activations and the frozen weights "
        "dominate, so the training increase is about equal; the saving (two AdamW moments per "
        "trainable parameter) grows with the backbone (about 2.4 GB of moments for full fine-tuning "
        "of the 300 M-parameter large/14 model).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="vit_pe_core_tiny_patch16_384")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks/training.md")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model, flags = cpu_info()
    log.info("CPU: %s; flags: %s", model, flags)
    results = []
    for method in METHODS:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--child", method]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
        log.info("%s", results[-1])
    from facesdk.manifest_io import atomic_write_bytes

    atomic_write_bytes(args.out, render(results, args).encode())
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
