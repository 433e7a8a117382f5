"""The Markdown report and the plot of ``benchmarks/methods.py`` (``docs/benchmarks/methods.md``)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from facesdk.bench import CPU_FLAGS
from facesdk.bench import cpu_info as _cpu_info

TASKS = ("age", "gender", "emotion")


def cpu_info() -> tuple[str, str]:
    """CPU model name and the instruction-set flags that matter here (:func:`facesdk.bench.cpu_info`)."""
    cpu = _cpu_info()
    flags = [f for f in CPU_FLAGS if f in cpu["flags"]]
    amx = "" if any(f.startswith("amx") for f in flags) else "; no AMX"
    return cpu["model"], " ".join(flags) + amx


def render(
    results: list[dict[str, Any]], full: dict[str, Any], args: argparse.Namespace, wall: float, cmd: str
) -> str:
    """The Markdown report of one run (``cmd``: the command line that made it)."""
    import onnxruntime
    import torch

    model, flags = cpu_info()
    plain = next((r for r in results if r["label"] == "full"), results[0])
    lines = [
        "# Adaptation methods side by side (CPU)",
        "",
        f"Measured on {time.strftime('%Y-%m-%d')} by `{cmd}`: {wall / 60:.1f} min, while other jobs kept the "
        f"1-minute load average at {args.load[0]:.1f} (start) and {args.load[1]:.1f} (end) on {os.cpu_count()} cores.",
        "",
        f"- Machine: {model} ({flags or 'no flags of interest'}), {os.cpu_count()} cores shared with other jobs; "
        f"torch {torch.__version__}, ONNX Runtime {onnxruntime.__version__}.",
        f"- Backbone: `{args.backbone}`, **random init**, reduced to `img_size={args.img_size}`, "
        f"`depth={args.depth}`; three linear heads (age 9, gender 2, emotion 7).",
        f"- Data: one synthetic set ({args.count} images at {args.img_size} px, 30% of each task's labels "
        "missing, 20% for validation), the balanced sampler, horizontal flips.",
        f"- Training: `facesdk`'s trainer, {args.steps} optimizer steps of batch {args.batch}, AdamW lr {args.lr:g} "
        f"(warmup {max(1, args.steps // 10)} steps, cosine to 0), weight decay 0.01, fp32, {args.threads} threads. "
        "Method options below; each method otherwise uses its defaults.",
        "- Peak RSS: `ru_maxrss` of a fresh process per method (interpreter and libraries included); *increase* = "
        "that peak minus the RSS just before the trainer was built. *Optimizer state*: the bytes of every "
        "optimizer-state tensor after training (AdamW's two moments; GaLore's projected moments and projections). "
        f"*Activations*: what autograd keeps for backward after one training forward pass of batch {args.batch} "
        "(distinct non-parameter storages seen by a `saved_tensors_hooks` pack hook).",
        "- Step time: the training epoch's wall time (data loading, forward, backward, step) over the steps. "
        "Children run with `OMP_WAIT_POLICY=PASSIVE`: on this shared machine spinning OpenMP threads made "
        "2-thread steps 5-8x slower.",
        "- Export: `run_export` (fp32 ONNX, opset 18, adapters merged, parity checked); GFLOPs at batch 1 from "
        "`export.json`'s `complexity` (ONNX graph count; merged and unmerged from torch). Latency: ONNX Runtime CPU, "
        f"{args.threads} intra-op threads, idle threads not spinning, {results[0]['b1_runs']} runs at batch 1 and "
        f"{results[0]['b8_runs']} at batch 8 per model, the models taking turns in 25 rounds so that load from other "
        "jobs hits all alike. Reported: the 10th percentile (median in brackets); on this shared machine the "
        "median of one model swung up to 2x between sessions, the 10th percentile stayed within about 5%. "
        "Methods that merge into the same graph should time alike: their spread is the noise.",
        "",
        "## Training",
        "",
        "| method | trainable params | share | checkpoint | peak RSS (increase) | optimizer state | activations | "
        "step time | val acc age / gender / emotion | mean bal. acc |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        accs = " / ".join(f"{r['val'][t]['acc']:.3f}" for t in TASKS)
        bacc = sum(r["val"][t]["bacc"] for t in TASKS) / len(TASKS)
        lines.append(
            f"| {r['label']} | {r['trainable']:,} | {100 * r['trainable_share']:.2f}% | "
            f"{r['checkpoint_bytes'] / 2**20:.2f} MiB | {r['peak_rss_mib']:.0f} MiB ({r['rss_increase_mib']:+.0f}) | "
            f"{r['optimizer_state_mib']:.2f} MiB | {r['activations_mib']:.1f} MiB | {r['step_ms']:.0f} ms | "
            f"{accs} | {bacc:.3f} |"
        )
    lines += [
        "",
        "## Deployment (exported ONNX)",
        "",
        "| method | GFLOPs merged (unmerged) | vs full | params merged | merge max diff | ORT batch 1 | ORT batch 8 | "
        "latency vs full (1 / 8) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['gflops_onnx']:.4f} ({r['gflops_unmerged']:.4f}) | "
            f"{r['gflops_onnx'] / plain['gflops_onnx']:.2f}x | {r['params_merged']:,} | {r['merge_max_abs_diff']:.1e} | "
            f"{r['b1_ms']:.2f} ({r['b1_median_ms']:.2f}) ms | {r['b8_ms']:.2f} ({r['b8_median_ms']:.2f}) ms | "
            f"{r['b1_ms'] / plain['b1_ms']:.2f}x / {r['b8_ms'] / plain['b8_ms']:.2f}x |"
        )
    lines += _notes(results, full, plain)
    lines += ["", "| run | method options |", "|---|---|"]
    for r in results:
        opts = ", ".join(f"{k}={v}" for k, v in r["config"].items() if k != "target") or "(none)"
        lines.append(f"| {r['label']} | {opts} |")
    lines += ["", "![trainable share, accuracy, cost per method](methods.png)", ""]
    return "\n".join(lines)


def _mean_bacc(r: dict[str, Any]) -> float:
    return sum(r["val"][t]["bacc"] for t in TASKS) / len(TASKS)


def _notes(results: list[dict[str, Any]], full: dict[str, Any], plain: dict[str, Any]) -> list[str]:
    """The paragraphs under the tables; every figure in them comes from this run."""
    notes = [""]
    mt = next((r for r in results if r["method"] == "mtlora"), None)
    if mt is not None:
        blocks = int(mt["config"]["branch_blocks"])
        notes += [
            "**MTLoRA's extra cost.** Every other method merges into the plain backbone, so their exports are "
            f"the same graph. MTLoRA keeps, per task, its own copy of the last {blocks} block"
            f"{'s' if blocks > 1 else ''}, the final norm and the attention pool: here "
            f"{mt['gflops_onnx'] / plain['gflops_onnx']:.2f}x the GFLOPs and {mt['b1_ms'] / plain['b1_ms']:.2f}x / "
            f"{mt['b8_ms'] / plain['b8_ms']:.2f}x the latency (batch 1 / 8) of the merged model, since the "
            f"reduced backbone has only {mt['depth'] - blocks} shared block(s). At the backbone's own size "
            f"({full['input_size'][0]} px, {full['depth']} blocks; counted, not trained) the merged model costs "
            f"{full['plain']['gflops']:.2f} GFLOPs and MTLoRA {full['mtlora']['gflops']:.2f} "
            f"({full['mtlora']['gflops'] / full['plain']['gflops']:.2f}x), with "
            f"{full['mtlora']['params'] / full['plain']['params']:.2f}x the parameters.",
            "",
        ]
    ranked = sorted(results, key=_mean_bacc, reverse=True)
    gc = next((r for r in results if r["label"] == "full + checkpointing"), None)
    rss = [r["peak_rss_mib"] for r in results]
    notes += [
        f"**Accuracy.** Highest mean balanced accuracy: {ranked[0]['label']} ({_mean_bacc(ranked[0]):.3f}); "
        f"lowest: {ranked[-1]['label']} ({_mean_bacc(ranked[-1]):.3f}). The backbone is random-init and the "
        "faces synthetic, so this ranks what each method learns from scratch in a few steps, not how well it "
        "adapts pretrained features to real faces. Much of the spread follows what trains: linear probing, norm "
        "tuning, VeRA, LoRA and DoRA leave the random-init attention pool as it is (the adapters' default "
        "`target` is the blocks' linear layers); partial, GaLore and full fine-tuning train one pool shared by "
        "the three tasks; MTLoRA gives each task its own pool with its own LoRA.",
        "",
        "**Memory.** Checkpoints hold every weight, frozen ones included, so their size follows the model "
        "(MTLoRA's per-task copies, VeRA's saved projections), not the share that trains. At this size the "
        f"interpreter, libraries and data pipeline dominate the resident memory: the peaks span "
        f"{min(rss):.0f}-{max(rss):.0f} MiB. The optimizer-state column is what the methods save, and it grows "
        "with the backbone: two fp32 moments per trainable parameter, about 2.4 GB for full fine-tuning of a "
        "300 M-parameter model, against rank-sized moments for GaLore and adapter-sized ones for LoRA.",
        "",
    ]
    if gc is not None and plain["label"] == "full":
        notes += [
            f"**Gradient checkpointing** recomputes each block's activations in backward: "
            f"{gc['step_ms'] / plain['step_ms']:.2f}x the step time of `full` here and the same accuracy (the "
            f"same weights), keeping {gc['activations_mib']:.1f} MiB of activations for backward instead of "
            f"{plain['activations_mib']:.1f} MiB. At this size that difference is lost in the resident memory; it "
            f"grows with the batch and the patches per image ({(full['input_size'][0] / gc['img_size']) ** 2:.0f}x "
            f"as many at {full['input_size'][0]} px as at {gc['img_size']} px).",
            "",
        ]
    notes += [
        "**Timing.** The machine was shared with other jobs: compare ratios within this run, not across runs.",
    ]
    if any(r["label"] == "dora + zero-shot heads" for r in results):
        notes += [
            "",
            "**DoRA from zero-shot heads** (`model.heads_init: zeroshot`): the heads start from text embeddings "
            "compiled by `facesdk zeroshot build`'s compiler for this reduced tower (`PE-Core-T-16-384`, random "
            "init, rebuilt at the benchmark's size and depth). The text tower is random here too, so these heads "
            "carry no knowledge and the row's accuracy says nothing about the head start a pretrained model "
            "gives; it shows the path and that it costs what `dora` costs (same trainable parameters, step and "
            "export).",
        ]
    return notes


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Four panels: trainable share, validation accuracy per task, training cost, deployment cost."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt
    import numpy as np

    from facesdk.contract.manifest_io import atomic_write_bytes

    labels = [r["label"] for r in results]
    y = np.arange(len(labels))
    fig, axes = plt.subplots(1, 4, figsize=(17, 0.45 * len(labels) + 1.8), sharey=True)
    axes[0].barh(y, [100 * r["trainable_share"] for r in results], color="tab:blue")
    axes[0].set(xscale="log", xlabel="trainable parameters (%)", title="what trains")
    for j, task in enumerate(TASKS):
        axes[1].barh(y + (j - 1) * 0.27, [r["val"][task]["acc"] for r in results], 0.27, label=task)
    axes[1].set(xlim=(0, 1), xlabel="validation accuracy", title="accuracy after the same steps")
    axes[1].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    axes[2].barh(y - 0.2, [r["step_ms"] for r in results], 0.4, label="step time (ms)", color="tab:orange")
    axes[2].barh(
        y + 0.2, [r["rss_increase_mib"] for r in results], 0.4, label="RSS increase (MiB)", color="tab:gray"
    )
    axes[2].set(xlabel="ms / MiB", title="training cost")
    axes[2].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    base = next((r for r in results if r["label"] == "full"), results[0])
    bars = (("gflops_onnx", "GFLOPs", "tab:red"), ("b1_ms", "ORT batch 1", "tab:pink"),
            ("b8_ms", "ORT batch 8", "tab:purple"))  # fmt: skip
    for j, (key, name, color) in enumerate(bars):
        axes[3].barh(y + (j - 1) * 0.27, [r[key] / base[key] for r in results], 0.27, label=name, color=color)
    axes[3].axvline(1.0, color="black", lw=0.8)
    axes[3].set(xlabel="relative to the merged full model", title="exported model cost")
    axes[3].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
