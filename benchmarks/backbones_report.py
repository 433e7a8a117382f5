"""Markdown tables and the chart of ``benchmarks/backbones.py`` (results dict -> files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TASKS = ("age", "gender", "emotion")
MARKERS = {"lora": "o", "dora": "s", "vera": "^", "norm": "D"}


def machine_line(m: dict[str, Any]) -> str:
    """``"AMD EPYC, 2 cores visible (avx2, avx512f, avx512_vnni, avx512_bf16; no AMX)"``: the CPU and
    the instruction sets that decide the int8/bf16 kernels (older results recorded only VNNI)."""
    flags = m.get("flags")
    if flags is None:
        flags = ["avx512_vnni"] if m.get("avx512_vnni") else []
    isa = ", ".join(flags) or "no AVX-512"
    amx = "" if any(f.startswith("amx") for f in flags) else "; no AMX"
    return f"{m['cpu']}, {m['cores_visible']} cores visible ({isa}{amx})"


def mean_acc(record: dict[str, Any]) -> float:
    return sum(record["val_acc"][t] for t in TASKS) / len(TASKS)


def best_methods(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per backbone, the training record with the best mean validation accuracy."""
    best: dict[str, dict[str, Any]] = {}
    for rec in results["train"]:
        if rec["backbone"] not in best or mean_acc(rec) > mean_acc(best[rec["backbone"]]):
            best[rec["backbone"]] = rec
    return best


def plot(results: dict[str, Any], path: Path) -> None:
    """Left: accuracy vs ms per face (fp32 filled, int8 hollow). Right: trainable params vs accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = best_methods(results)
    colors = {d["backbone"]: f"C{i}" for i, d in enumerate(results["deploy"])}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for d in results["deploy"]:
        name, color = d["backbone"], colors[d["backbone"]]
        if name not in best:
            continue
        acc = mean_acc(best[name])
        fp32, int8, u8 = (d[f"{p}_b8_ms_per_face"] for p in ("fp32", "int8", "int8u8"))
        left.plot([min(fp32, int8, u8), max(fp32, int8, u8)], [acc, acc], color=color, lw=1, alpha=0.6)
        left.scatter([fp32], [acc], color=color, s=60, label=f"{name} ({best[name]['method']})")
        left.scatter([int8], [acc], facecolors="none", edgecolors=color, s=60)
        left.scatter([u8], [acc], color=color, marker="x", s=50)
    left.set_xscale("log")
    left.set_xlabel("ONNX Runtime ms per face, batch 8, 2 threads (filled fp32, hollow int8, x int8 u8-act)")
    left.set_ylabel("mean validation accuracy (best method)")
    left.set_title(f"accuracy vs latency ({results['args']['deploy_size']} px deployed)")
    left.legend(fontsize=7, loc="best")
    for rec in results["train"]:
        right.scatter(
            rec["trainable"], mean_acc(rec), color=colors.get(rec["backbone"], "k"),
            marker=MARKERS.get(rec["method"], "x"), s=45,
        )  # fmt: skip
    for method, marker in MARKERS.items():
        right.scatter([], [], color="gray", marker=marker, label=method)
    right.set_xscale("log")
    right.set_xlabel("trainable parameters (backbone adapters + heads)")
    right.set_ylabel("mean validation accuracy")
    right.set_title(f"adaptation: {results['args']['steps']} steps at {results['args']['train_size']} px")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _train_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| backbone | method | trainable | share | train memory MiB (weights / grads / optim / activations) "
        "| step ms | val acc age / gender / emotion | mean |",
        "|---|---|---:|---:|---|---:|---|---:|",
    ]
    for r in results["train"]:
        acc = " / ".join(f"{r['val_acc'][t]:.3f}" for t in TASKS)
        lines.append(
            f"| {r['backbone']} | {r['method']} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.2f}% "
            f"| {r['train_memory_mib']:.1f} ({r['weights_mib']:.1f} / {r['grads_mib']:.2f} / "
            f"{r['optimizer_mib']:.2f} / {r['activations_mib']:.1f}) | {r['step_ms']:.0f} | {acc} "
            f"| {mean_acc(r):.3f} |"
        )
    return lines


def _deploy_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| backbone | params | GFLOPs | fp32 ms b1 | fp32 ms/face b8 | int8 ms b1 | int8 ms/face b8 "
        "| int8 speed-up b8 | int8 agreement age / gender / emotion (gate) | u8-act ms b1 | u8-act ms/face b8 "
        "| u8-act speed-up b8 | u8-act agreement (gate) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for d in results["deploy"]:
        agree = " / ".join(f"{d['int8_agreement'][t]:.3f}" for t in TASKS)
        u8 = " / ".join(f"{d['int8u8_agreement'][t]:.3f}" for t in TASKS)
        lines.append(
            f"| {d['backbone']} | {d['params'] / 1e6:.2f} M | {d['gflops']:.3f} | {d['fp32_b1_ms']:.2f} "
            f"| {d['fp32_b8_ms_per_face']:.2f} | {d['int8_b1_ms']:.2f} | {d['int8_b8_ms_per_face']:.2f} "
            f"| {d['int8_speedup_b8']:.2f}x | {agree} ({'pass' if d['int8_passed'] else 'fail'}) "
            f"| {d['int8u8_b1_ms']:.2f} | {d['int8u8_b8_ms_per_face']:.2f} | {d['int8u8_speedup_b8']:.2f}x "
            f"| {u8} ({'pass' if d['int8u8_passed'] else 'fail'}) |"
        )
    return lines


def _openvino_table(results: dict[str, Any]) -> list[str]:
    if "ov_int8_b8_ms" not in results["deploy"][0]:
        return ["(not measured in this run: OpenVINO was not installed)"]
    lines = [
        "| backbone | fp32 ms b1 | fp32 ms/face b8 | int8 ms b1 | int8 ms/face b8 | int8 speed-up b8 "
        "| int8 vs ORT fp32 b8 | int8 top-1 agreement with ORT fp32, age / gender / emotion |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for d in results["deploy"]:
        agree = " / ".join(f"{d['ov_int8_agreement'][t]:.3f}" for t in TASKS)
        lines.append(
            f"| {d['backbone']} | {d['ov_fp32_b1_ms']:.2f} | {d['ov_fp32_b8_ms_per_face']:.2f} "
            f"| {d['ov_int8_b1_ms']:.2f} | {d['ov_int8_b8_ms_per_face']:.2f} | {d['ov_int8_speedup_b8']:.2f}x "
            f"| {d['ov_int8_vs_ort_fp32_b8']:.2f}x | {agree} |"
        )
    return lines


def _fps_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| backbone | fp32: 1 face | fp32: 6 faces | int8: 1 face | int8: 6 faces | faces found (1 / 6) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for d in results["deploy"]:
        lines.append(
            f"| {d['backbone']} | {d['fps_fp32_1']:.1f} | {d['fps_fp32_6']:.1f} | {d['fps_int8_1']:.1f} "
            f"| {d['fps_int8_6']:.1f} | {d['faces_1']} / {d['faces_6']} |"
        )
    return lines


def _findings(results: dict[str, Any]) -> list[str]:
    """Sentences computed from the numbers (the prose around them is in docs/backbones.md)."""
    deploy, best = results["deploy"], best_methods(results)
    fastest = min(deploy, key=lambda d: d["fp32_b8_ms_per_face"])
    accurate = max(best.values(), key=mean_acc)
    s8 = [d["int8_speedup_b8"] for d in deploy]
    u8 = [d["int8u8_speedup_b8"] for d in deploy]
    passed = [d["backbone"] for d in deploy if d["int8_passed"]]
    failed = [d["backbone"] for d in deploy if not d["int8_passed"]]
    vnni = results["machine"]["avx512_vnni"]
    cnn = [d for d in deploy if not d["backbone"].startswith("vit_") and "ov_int8_speedup_b8" in d]
    ov_cnn = [d["ov_int8_speedup_b8"] for d in cnn]
    return [
        f"- Fastest per face: **{fastest['backbone']}**, {fastest['fp32_b8_ms_per_face']:.2f} ms at batch 8 "
        f"({fastest['fp32_b1_ms']:.2f} ms at batch 1), {fastest['gflops']:.3f} GFLOPs at "
        f"{fastest['input_size']} px; end to end {fastest['fps_fp32_1']:.0f} frames/s on the one-face frame.",
        f"- Most accurate after {results['args']['steps']} steps from random init: **{accurate['backbone']}** with "
        f"{accurate['method']} (mean {mean_acc(accurate):.3f}).",
        f"- INT8 with symmetric int8 activations (the shipped, TensorRT-ready model) ran at "
        f"{min(s8):.2f}x-{max(s8):.2f}x the FP32 speed at batch 8; with uint8 activations "
        f"{min(u8):.2f}x-{max(u8):.2f}x. "
        + f"This CPU {'has' if vnni else 'has no'} AVX-512 VNNI; uint8 activations ran faster than int8 on "
        f"{sum(u > s for s, u in zip(s8, u8, strict=True))} of {len(s8)} backbones here.",
        *(
            [
                f'- The same INT8 files through OpenVINO (`Analyzer(..., backend="openvino")`): the CNNs ran at '
                f"{min(ov_cnn):.2f}x-{max(ov_cnn):.2f}x OpenVINO's own FP32 speed at batch 8 (best: "
                f"{max(cnn, key=lambda d: d['ov_int8_speedup_b8'])['backbone']}), the ViT at "
                + ", ".join(f"{d['ov_int8_speedup_b8']:.2f}x" for d in deploy if d not in cnn)
                + ". ONNX Runtime's INT8 ran the same CNNs at "
                f"{min(d['int8_speedup_b8'] for d in cnn):.2f}x-{max(d['int8_speedup_b8'] for d in cnn):.2f}x "
                "its FP32 speed (agreement: the table below)."
            ]
            if ov_cnn
            else []
        ),
        _gate_finding(deploy, passed, failed),
    ]


def _gate_finding(deploy: list[dict[str, Any]], passed: list[str], failed: list[str]) -> str:
    """The gate bullet: who passed, and whether the held-out set could let anyone pass at all."""
    from facesdk.bench import wilson_lower_bound

    gate = deploy[0].get("int8_gate", {})
    rule = "Wilson 95% lower bound of the top-1 agreement >= {} on every task".format(
        gate.get("threshold", 0.98)
    )
    held = gate.get("held_out")
    reach = ""
    if held and wilson_lower_bound(held, held) < gate["threshold"]:
        reach = (
            f"; with {held} held-out crops even full agreement gives a bound of "
            f"{wilson_lower_bound(held, held):.3f}, so no model can pass at this set size (`accept_drop` "
            "measures them all)"
        )
    return (
        f"- Agreement gate ({rule}"
        + (f", {held} held-out crops" if held and not reach else "")
        + f"{reach}) on these "
        f"random-init models: passed by {', '.join(passed) or 'none'}; failed by {', '.join(failed) or 'none'} "
        "(random heads on random features give near-tie logits; the gate is the real check on a trained "
        "model: trained CNNs through INT8 in [cnn_int8.md](cnn_int8.md), `python -m benchmarks.cnn_int8`)."
    )


def render(results: dict[str, Any], png: str) -> str:
    """The whole ``docs/benchmarks/backbones.md``."""
    a, m = results["args"], results["machine"]
    head = [
        "# Backbones: ViT and CNNs, adaptation and CPU deployment",
        "",
        "Written by `python -m benchmarks.backbones` "
        f"(train {a['train_size']} px, {a['steps']} steps of batch {a['batch']}; deploy {a['deploy_size']} px; "
        f"{a['threads']} threads). Every backbone is **random-init** (no hub downloads here), with BatchNorm "
        "statistics estimated on the data first as a stand-in for pretrained ones: the accuracy columns "
        "compare how much each backbone x method learns from random features in a few steps on the "
        "synthetic set, not what pretrained backbones reach; latency and FLOPs do not depend on the weights.",
        "",
        f"Machine: {machine_line(m)}; "
        f"load average at the end {tuple(round(v, 1) for v in m['load_average'])} (absolute times "
        "scatter with the load; the models took turns, so their ratios are fairer than their values). "
        f"Run time {results['seconds']['total']:.0f} s. Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + ".",
        "",
        f"![accuracy vs ms per face]({png})",
        "",
        *_findings(results),
        "",
        "## Adaptation cost and accuracy (part 1)",
        "",
        "Train memory is counted from tensors, not the process: weights and buffers, gradients of the "
        "trainable parameters, optimizer state, and the activations autograd saves for backward at the "
        "training batch. Step time is the median over the steps after the first two.",
        "",
        *_train_table(results),
        "",
        "## Deployment on CPU (part 2)",
        "",
        "fp32: `model.onnx` (adapters merged, BatchNorm folded); int8: `model.int8.onnx` from "
        f"`facesdk.calibration` (entropy, {a['calib_count']} `lfw_subset()` face crops, half held out "
        "for the agreement gate, which passes on the Wilson 95% lower bound; `accept_drop` so every model is "
        "measured), symmetric int8 activations as "
        'TensorRT needs; u8-act: the same with asymmetric uint8 activations (`activations="uint8"`, '
        "ONNX Runtime on CPU only). ONNX Runtime, CPU provider, median ms over the rounds.",
        "",
        *_deploy_table(results),
        "",
        "The same `model.onnx` and `model.int8.onnx` through the SDK's OpenVINO backend (CPU device, "
        '`precision_hint="f32"`, the same threads), median ms over the rounds; agreement: top-1 of '
        "OpenVINO's INT8 against ONNX Runtime's FP32 on every calibration crop:",
        "",
        *_openvino_table(results),
        "",
        "End-to-end Analyzer frames per second (YuNet detection, five-point alignment, one batched "
        "backbone call per frame) on the 512 x 512 astronaut (one face) and a 3 x 2 tiling of it "
        "(1536 x 1024, six faces):",
        "",
        *_fps_table(results),
        "",
    ]
    return "\n".join(head)


def main(argv: list[str] | None = None) -> int:
    """Re-render the document and chart from a saved results file (``backbones.json``)."""
    import argparse
    import json

    from .common import DOCS

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", nargs="?", type=Path, default=DOCS / "backbones.json")
    source = parser.parse_args(argv).results
    data = json.loads(source.read_text())
    plot(data, source.with_suffix(".png"))
    source.with_suffix(".md").write_text(render(data, source.with_suffix(".png").name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
