"""The fastest CPU path for the PE backbone: RoPE layout x graph variant x runtime x precision.

One command (about 13 minutes on 2 cores at 384 px; ``--nncf-python`` adds OpenVINO's NNCF INT8,
which is not a facesdk dependency and runs in an environment of its own):

    python -m venv .venv-nncf && .venv-nncf/bin/pip install nncf==3.4.0 -e ".[openvino]"   # once
    python -m benchmarks.fast_path --out docs/benchmarks/fast_path --nncf-python .venv-nncf/bin/python

What it does, in one run, so that every ratio compares numbers taken side by side:

1. Builds the stand-in model: ``vit_pe_core_tiny_patch16_384`` (random init: hub weights cannot be
   downloaded here) whose linear heads are trained on its features of the synthetic face set
   (``facesdk.training.synthetic``), saved as a facesdk checkpoint. It stands in for hub weights:
   the agreement figures below are of this model, not of a hub-trained one.
2. Exports it with ``facesdk export build``'s pipeline: ``--rope-layout interleaved`` (timm's graph,
   TensorRT's default) and ``--rope-layout half`` (the rewrite of ``facesdk.export.rewrite``) with
   ``--precision fp32,int8`` (Q/DQ INT8 through the shipped gate, calibrated on synthetic crops);
   then the variants of :mod:`benchmarks.graph_variants` (RoPE on all tokens; opset-23 ``Attention``)
   and, with ``--nncf-python``, NNCF's INT8 IR of the half graph.
3. Times each path (ONNX Runtime FP32/INT8; OpenVINO FP32, BF16 and INT8, static batch buckets, plus
   one dynamic model for the FP32 graphs) at batch 1 and 8, each in its own process (ONNX Runtime's
   idle threads would slow another runtime in the same process; see FINDINGS.md), 2 threads each,
   in alternating rounds (``facesdk.bench``); ratios are medians of the per-round ratios to ONNX
   Runtime FP32 on the interleaved graph.
4. Measures each path's top-1 agreement per task with ONNX Runtime FP32 (interleaved) on held-out
   synthetic face crops through the model's preprocessing, with the Wilson 95% lower bound; the
   target needs >= 98% on every task.
5. Profiles the best path with OpenVINO's per-node counters at batch 8: where its time goes.

The machine is shared with other jobs and noisy: only ratios from one run mean anything.
``--tiny`` runs the same steps on a 64 px, depth-2 model in seconds (the smoke test uses it).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.bench import compare_arrays, wilson_lower_bound
from facesdk.bench.machine import CPU_FLAGS, cpu_info, machine_info
from facesdk.bench.timing import alternate_rounds, run_in_child, summarise, time_calls

from .common import ROOT

BACKBONE = "vit_pe_core_tiny_patch16_384"
TARGET_RATIO = 0.25
THRESHOLD = 0.98
THREADS = 2
REFERENCE = "interleaved / onnxruntime fp32"

log = logging.getLogger("fast_path")


# --------------------------------------------------------------------------------------------
# the stand-in model


def _synthetic_crops(work: Path, count: int, size: int, preprocess: Any) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed synthetic face crops and their (age, gender, emotion) labels."""
    import cv2

    from facesdk.preprocess import to_input_tensor
    from facesdk.training.datasets.manifest import read_manifest
    from facesdk.training.synthetic import SynthOptions, generate_synthetic

    synth = generate_synthetic(work / "synthetic", SynthOptions(count=count, missing=0.0, seed=7, size=size))
    rows = read_manifest(synth.train) + read_manifest(synth.val)
    crops = to_input_tensor([cv2.imread(str(r.path)) for r in rows], preprocess)
    labels = np.array([[r.age_group, r.gender, r.emotion] for r in rows], dtype=np.int64)
    return crops, labels


def build_standin(
    work: Path, size: int, kwargs: dict[str, Any], train: int, held: int
) -> tuple[Path, np.ndarray, Any]:
    """Train the heads of a random-init PE-T on synthetic faces; return (checkpoint, held-out crops, preprocess)."""
    import torch

    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import build_model, save_checkpoint

    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    backbone = BackboneSpec(BACKBONE, "random", {"img_size": size, **kwargs})
    heads = {t.name: HeadSpec() for t in DEFAULT_TASKS}
    model, preprocess, method = build_model(backbone, DEFAULT_TASKS, heads, MethodSpec("full", {}))
    model.eval()
    crops, labels = _synthetic_crops(work, train + held, 96, preprocess)
    start = time.perf_counter()
    with torch.no_grad():
        feats = torch.cat(
            [model.forward_features(torch.from_numpy(crops[i : i + 16])) for i in range(0, train, 16)]
        )
    log.info("features of %d training crops in %.0f s", train, time.perf_counter() - start)
    y = torch.from_numpy(labels[:train])
    params = [p for h in model.heads.values() for p in h.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = sum(
            torch.nn.functional.cross_entropy(model.heads[t.name](feats), y[:, i])
            for i, t in enumerate(DEFAULT_TASKS)
        )
        loss.backward()
        opt.step()
    log.info("heads trained: loss %.3f", float(loss))
    ckpt = work / "checkpoint"
    save_checkpoint(model, ckpt, backbone=backbone, preprocess=preprocess, tasks=DEFAULT_TASKS,
                    method=method, heads=heads, training={"stand_in": "heads trained on synthetic faces"})  # fmt: skip
    return ckpt, np.ascontiguousarray(crops[train:]), preprocess


def export_all(ckpt: Path, work: Path, preprocess: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every graph the table times: {graph: {"export": dir, "files": {model: path}}} and records."""
    from facesdk.calibration.calibset import load_calibration_set
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export

    from .cnn_int8 import synthetic_set
    from .graph_variants import VARIANTS, build_variant

    calib = synthetic_set(work, "calib", preprocess, args.calib_count, seed=1)
    graphs: dict[str, Any] = {}
    gate = None
    for layout in ("interleaved", "half"):
        directory = work / f"export_{layout}"
        precisions = ("fp32", "int8") if layout == "half" else ("fp32",)
        manifest = run_export(ExportOptions(
            ckpt=ckpt, out=directory, max_batch=8, rope_layout=layout, force=True, precisions=precisions,
            calib=calib if layout == "half" else None,
            int8_options={"accept_drop": True} if layout == "half" else {},
        ))  # fmt: skip
        assert manifest.models["onnx-fp32"].extra["rope_layout"] == layout
        files = {
            key: directory / entry.file.path
            for key, entry in manifest.models.items()
            if key.startswith("onnx")
        }
        graphs[layout] = {"export": directory, "files": files}
        if "onnx-int8" in manifest.models:
            gate = manifest.models["onnx-int8"].extra.get("calibration")
    variants = {}
    for name in VARIANTS:
        path = work / f"variant_{name}.onnx"
        variants[name] = build_variant(name, ckpt, path, max_batch=8)
        graphs[f"half + {name}"] = {"export": graphs["half"]["export"], "files": {"onnx-fp32": path}}
    nncf = None
    if args.nncf_python:
        crops, _ = load_calibration_set(calib).arrays(calib)
        np.save(work / "calib_crops.npy", crops)
        xml = work / "nncf" / "model.xml"
        xml.parent.mkdir(exist_ok=True)
        cmd = [str(args.nncf_python), "-m", "benchmarks.graph_variants", "nncf",
               str(graphs["half"]["files"]["onnx-fp32"]), str(work / "calib_crops.npy"), str(xml)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"NNCF quantization failed:\n{proc.stderr[-3000:]}")
        nncf = json.loads(proc.stdout.strip().splitlines()[-1])
        graphs["half"]["files"]["nncf-int8"] = xml
    return {"graphs": graphs, "gate": gate, "variants": variants, "nncf": nncf,
            "calib_count": args.calib_count}  # fmt: skip


# name, runtime, model file key, precision hint, static buckets: FP32 paths first, then INT8
PATHS = (
    ("onnxruntime fp32", "onnxruntime", "onnx-fp32", None, False),
    ("openvino fp32 static", "openvino", "onnx-fp32", "f32", True),
    ("openvino bf16 static", "openvino", "onnx-fp32", "bf16", True),
    ("openvino fp32 dynamic", "openvino", "onnx-fp32", "f32", False),
    ("openvino bf16 dynamic", "openvino", "onnx-fp32", "bf16", False),
    ("onnxruntime int8 (Q/DQ)", "onnxruntime", "onnx-int8", None, False),
    ("openvino int8 (Q/DQ) static", "openvino", "onnx-int8", "f32", True),
    ("openvino int8 (Q/DQ) + bf16 static", "openvino", "onnx-int8", "bf16", True),
    ("openvino int8 (NNCF) static", "openvino", "nncf-int8", "f32", True),
    ("openvino int8 (NNCF) + bf16 static", "openvino", "nncf-int8", "bf16", True),
)


def _have_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def path_specs(graphs: dict[str, Any], work: Path, reps: tuple[int, int]) -> list[dict[str, Any]]:
    """One spec per (graph, path) the machine can run: FP32 paths on every graph, INT8 on the half one."""
    openvino = _have_openvino()
    specs = []
    for graph, info in graphs.items():
        variant = graph not in ("interleaved", "half")
        for name, runtime, key, hint, static in PATHS:
            if key not in info["files"] or (runtime == "openvino" and not openvino):
                continue
            if variant and (not static and runtime == "openvino"):
                continue  # variants: ORT and OpenVINO's static buckets (the SDK's default) only
            label = f"{graph} / {name}"
            specs.append({
                "label": label, "graph": graph, "path": name, "export": str(info["export"]),
                "file": str(info["files"][key]), "runtime": runtime, "hint": hint, "static": static,
                "reps1": reps[0], "reps8": reps[1], "threads": THREADS,
                "logits": str(work / f"logits_{len(specs)}.npz"),
            })  # fmt: skip
    return specs


# --------------------------------------------------------------------------------------------
# one path in its own process


def _backend(spec: dict[str, Any], profile: bool = False) -> Any:
    from facesdk.backends import create_backend
    from facesdk.contract.export_manifest import load_export_manifest

    manifest = load_export_manifest(spec["export"])
    if spec["runtime"] == "onnxruntime":
        opts: dict[str, Any] = {"intra_op_threads": THREADS, "providers": ["CPUExecutionProvider"]}
    else:
        opts = {"precision_hint": spec["hint"], "num_threads": THREADS, "profile": profile}
        opts["batch_buckets"] = (1, 2, 4, 8) if spec["static"] else None
    return manifest, create_backend(spec["runtime"], manifest, Path(spec["file"]), **opts)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one path at batch 1 and 8 (and, once, save its logits on the held-out crops); a child process."""
    from facesdk.backends import run_batched

    manifest, backend = _backend(spec, profile=bool(spec.get("profile")))
    h, w = manifest.input.shape[2:]
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {}
    for batch, reps in ((1, spec["reps1"]), (8, spec["reps8"])):
        x = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
        times[str(batch)] = time_calls(lambda x=x: backend.run(x), warmup=1, repeats=reps)  # warm-up compiles
    result: dict[str, Any] = {"label": spec["label"], "times_by_batch": times, "describe": backend.describe()}
    if spec.get("profile"):
        result["profile_ms"] = backend.op_profile()  # of the last batch-8 call
        result["profile_nodes_ms"] = backend.op_profile(by="node")
    elif spec.get("crops") and not Path(spec["logits"]).exists():
        np.savez(spec["logits"], **run_batched(backend, np.load(spec["crops"])))
    backend.close()
    return result


def measure(specs: list[dict[str, Any]], crops: Path | None, rounds: int) -> list[dict[str, Any]]:
    """Alternating rounds over every path (``facesdk.bench``); one result per (path, batch, round).

    With ``crops``, each path's first run also saves its logits on them to ``spec["logits"]``.
    """
    rows = [{**spec, "crops": str(crops)} if crops else dict(spec) for spec in specs]
    results = alternate_rounds(rows, functools.partial(run_in_child, "benchmarks.fast_path"), rounds=rounds)
    per_batch = []
    for res in results:
        if res.get("error"):
            raise RuntimeError(f"{res['label']} failed: {res['error']}")
        for batch, values in res["times_by_batch"].items():
            per_batch.append({"label": res["label"], "batch": int(batch), "times_ms": values,
                              "round": res["round"], "describe": res.get("describe")})  # fmt: skip
    return per_batch


def summarize(specs: list[dict[str, Any]], per_batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per path: medians, ratios to ORT FP32 interleaved, agreement per task with its bound."""
    table = {(r["label"], r["batch"]): r for r in summarise(per_batch, reference=REFERENCE)}
    reference = dict(np.load(next(s["logits"] for s in specs if s["label"] == REFERENCE)))
    rows = []
    for spec in specs:
        comparison = compare_arrays(
            reference, dict(np.load(spec["logits"])), inputs="held-out synthetic crops"
        )
        b1, b8 = table[spec["label"], 1], table[spec["label"], 8]
        rows.append({
            "graph": spec["graph"], "path": spec["path"], "label": spec["label"],
            "ms_b1": b1["p50_ms"], "ms_b8": b8["p50_ms"], "ratio_b1": b1["ratio"], "ratio_b8": b8["ratio"],
            "round_ratios_b8": b8.get("round_ratios"),
            "agreement": {t: a.rate for t, a in comparison.tasks.items()},
            "wilson_lower_95": {t: a.lower_bound for t, a in comparison.tasks.items()},
            "crops": comparison.crops, "passes_gate": comparison.min_agreement >= THRESHOLD,
            "samples_b1": b1["samples"], "samples_b8": b8["samples"], "describe": b8.get("describe"),
        })  # fmt: skip
    return rows


def profile_best(spec: dict[str, Any]) -> dict[str, Any] | None:
    """OpenVINO's milliseconds of one batch-8 call on ``spec``'s path: ``{"types": ..., "nodes": ...}``."""
    if spec["runtime"] != "openvino":
        return None
    result = run_in_child("benchmarks.fast_path", {**spec, "profile": True, "reps1": 1, "reps8": 3})
    if result.get("error"):
        log.warning("profiling %s failed: %s", spec["label"], result["error"])
        return None
    return {"types": result["profile_ms"], "nodes": result["profile_nodes_ms"]}


# --------------------------------------------------------------------------------------------
# the report


def _step_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What each step brings at batch 8: the same path on two graphs, or two paths on one graph."""
    by = {(r["graph"], r["path"]): r["ratio_b8"] for r in rows}
    pairs = [
        ("half-rotation RoPE", ("interleaved", "{p}"), ("half", "{p}")),
        ("RoPE on all tokens", ("half", "{p}"), ("half + rope_all_tokens", "{p}")),
        ("opset-23 Attention", ("half", "{p}"), ("half + attention23", "{p}")),
    ]
    lines = []
    for step, before, after in pairs:
        cells = []
        for path in ("onnxruntime fp32", "openvino fp32 static", "openvino bf16 static"):
            a, b = by.get((before[0], path)), by.get((after[0], path))
            if a and b:
                cells.append(f"{path} {a:.2f}x -> {b:.2f}x ({b / a:.2f})")
        if cells:
            lines.append(f"- {step}: " + "; ".join(cells))
    for name, _runtime, key, hint, _static in PATHS:
        if key == "onnx-fp32":
            continue
        ratio = by.get(("half", name))
        base = {None: "onnxruntime fp32", "f32": "openvino fp32 static", "bf16": "openvino bf16 static"}[hint]
        ref = by.get(("half", base))
        if ratio and ref:
            lines.append(f"- INT8, {name}: {ratio:.2f}x ({ratio / ref:.2f} of {base} on the half graph)")
    return lines


def _reference_ms(rows: list[dict[str, Any]]) -> float:
    return next(r["ms_b8"] for r in rows if r["label"] == REFERENCE)


def _named_share(nodes: dict[str, float], node_type: str, part: str) -> tuple[int, int, float]:
    """(nodes of ``node_type``, how many have ``part`` in their name, their milliseconds)."""
    mine = {k: ms for k, ms in nodes.items() if k.startswith(node_type + ":")}
    named = [ms for k, ms in mine.items() if part in k]
    return len(mine), len(named), sum(named)


def _profile_lines(best: dict[str, Any], profile: dict[str, Any] | None, reference_ms: float) -> list[str]:
    if not profile:
        return []
    types, nodes = profile["types"], profile["nodes"]
    total = sum(types.values()) or 1.0
    top = list(types.items())[:8]
    rest = total - sum(ms for _, ms in top)
    budget = TARGET_RATIO * reference_ms
    short = best["ms_b8"] - budget
    (first, first_ms), (second, second_ms) = top[0], top[1] if len(top) > 1 else ("-", 0.0)
    count, in_attention, attention_ms = _named_share(nodes, "Subgraph", "/attn/")
    verdict = (
        f"The target allows {budget:.0f} ms at batch 8 ({TARGET_RATIO}x of ONNX Runtime FP32's "
        f"{reference_ms:.0f} ms); the best path takes {best['ms_b8']:.0f} ms, "
        + (f"{short:.0f} ms ({short / best['ms_b8']:.0%}) too many. " if short > 0 else "within it. ")
        + f"Its largest parts here: `{first}` {100 * first_ms / total:.0f}% and `{second}` "
        f"{100 * second_ms / total:.0f}% of the profiled time."
    )
    lines = [
        "",
        f"## Where the best path's time goes ({best['label']}, batch 8)",
        "",
        "OpenVINO's per-node counters of one batch-8 call, summed by the node type OpenVINO ran (after "
        "its fusions). `FullyConnected*` nodes are the weight GEMMs (q/k/v, projection, MLP; `Quantized` "
        "ones run INT8); `Subgraph` nodes are OpenVINO's JIT-fused kernels, each named after the layer "
        f"it stands for: here {in_attention} of the {count} `Subgraph` nodes are named after an attention "
        f"module (`/attn/` in the name) and hold {attention_ms:.1f} of their "
        f"{types.get('Subgraph', 0.0):.1f} ms. The INT8 model keeps the attention products float "
        "(docs/int8.md), so they run in the float precision.",
        "",
        "| node type | ms | share |",
        "|---|---|---|",
        *(f"| {name} | {ms:.1f} | {100 * ms / total:.1f}% |" for name, ms in top),
        f"| (all others) | {rest:.1f} | {100 * rest / total:.1f}% |",
        "",
        verdict,
    ]
    return lines


def write_report(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """``out.md`` and ``out.json``."""
    ok = [r for r in rows if r["passes_gate"]]
    best = min(ok, key=lambda r: r["ratio_b8"]) if ok else None
    gate = meta.get("gate") or {}
    lines = [
        "# The fastest CPU path: RoPE layout x graph variant x runtime x precision",
        "",
        f"Written by `{meta['command']}` on {meta['date']}.",
        "",
        f"- CPU: {meta['cpu']['model']} ({meta['cpu']['cores']} cores seen), flags: "
        f"{', '.join(meta['cpu']['flags']) or 'none of ' + ', '.join(CPU_FLAGS)}",
        f"- runtimes: {meta['versions']}; {THREADS} threads per path, each path in its own process",
        f"- load average (1 min) at start / end: {meta['load_average'][0]} / {meta['load_average'][1]} "
        f"on {meta['cpu']['cores']} cores (other jobs share the machine)",
        f"- model: `{BACKBONE}` at {meta['size']} px{meta['kwargs_note']}, random-init backbone with linear "
        "heads trained on its features of the synthetic face set: **the stand-in for hub weights**, which "
        "cannot be downloaded here",
        f"- {meta['rounds']} alternating rounds (`facesdk.bench`), {meta['reps'][0]} (batch 1) and "
        f"{meta['reps'][1]} (batch 8) timed runs per round; times are medians over all rounds, ratios the "
        "median of the per-round ratios to the first row; compare ratios within this table, not times across runs",
        f"- agreement: top-1 per task with ONNX Runtime FP32 on the interleaved graph, on {meta['held_out']} "
        f"held-out synthetic face crops (through the model's preprocessing), with the Wilson 95% lower bound "
        f"in the JSON; target >= {THRESHOLD:.0%} on every task",
        f"- INT8 (Q/DQ): the export's `model.int8.onnx`, calibrated on {meta['calib_count']} synthetic crops "
        f"the heads never saw; its gate (held-out half, Wilson bound >= {gate.get('threshold', THRESHOLD)}): "
        f"{_gate_text(gate)}",
    ]
    if meta.get("nncf"):
        n = meta["nncf"]
        lines.append(f"- INT8 (NNCF {n['nncf']}): OpenVINO IR of the half graph, `model_type=TRANSFORMER`, "
                     f"calibrated on the same {n['crops']} crops in {n['seconds']} s")  # fmt: skip
    else:
        lines.append("- INT8 (NNCF): not measured in this run (`--nncf-python` not given)")
    lines += [
        "",
        "| graph | path | batch 1 ms | batch 8 ms | x ORT FP32 (b1) | x ORT FP32 (b8) | agreement (age/gender/emotion) | lowest Wilson 95% bound | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        agr = " / ".join(f"{v:.3f}" for v in r["agreement"].values())
        lines.append(
            f"| {r['graph']} | {r['path']} | {r['ms_b1']:.1f} | {r['ms_b8']:.1f} | {r['ratio_b1']:.2f} | "
            f"{r['ratio_b8']:.2f} | {agr} | {min(r['wilson_lower_95'].values()):.3f} | "
            f"{'pass' if r['passes_gate'] else 'FAIL'} |"
        )
    lines += [
        "",
        f"The target reads the agreement's point estimate (>= {THRESHOLD:.0%}); the Wilson bound says how "
        f"little {meta['held_out']} crops prove: even full agreement bounds it at "
        f"{wilson_lower_bound(meta['held_out'], meta['held_out']):.3f}, so a path that must *prove* 98% "
        "(as the export's INT8 gate does) needs more crops than this table has.",
    ]
    lines += ["", "## What each step brings (x ORT FP32 at batch 8)", "", *_step_lines(rows), ""]
    if best is None:
        lines.append("No path passed the agreement target.")
    else:
        met = best["ratio_b8"] <= TARGET_RATIO
        bf16 = "avx512_bf16" in meta["cpu"]["flags"] or "amx_bf16" in meta["cpu"]["flags"]
        lines.append(
            f"Best path that passes at batch 8: **{best['graph']} / {best['path']}, "
            f"{best['ratio_b8']:.2f}x** of ONNX Runtime FP32's time (target <= {TARGET_RATIO}x on a CPU with "
            f"AVX-512 BF16 or AMX{'' if bf16 else '; this CPU has neither, so the 0.75x AVX2 target applies'}): "
            f"{'met' if met else 'NOT met, short by ' + format(best['ratio_b8'] - TARGET_RATIO, '.2f') + 'x'}."
        )
        lines += _profile_lines(best, meta.get("profile"), _reference_ms(rows))
    lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    out.with_suffix(".json").write_text(
        json.dumps({**meta, "rows": rows, "best": best}, indent=2, default=str)
    )


def _gate_text(gate: dict[str, Any]) -> str:
    if not gate:
        return "no record"
    agreement = gate.get("agreement") or {}
    bound = gate.get("agreement_lower_bound") or {}
    cells = ", ".join(f"{t} {agreement[t]:.3f} (>= {bound.get(t, float('nan')):.3f})" for t in agreement)
    verdict = "passed" if gate.get("passed") else "failed (the benchmark accepts the drop to time it)"
    return f"{verdict} on {gate.get('held_out')} crops: {cells}"


def _versions() -> str:
    versions = machine_info(THREADS)["versions"]
    return ", ".join(f"{name} {versions[name]}" for name in ("onnxruntime", "openvino") if name in versions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("docs/benchmarks/fast_path"), help="report path stem"
    )
    parser.add_argument("--size", type=int, default=384, help="input size in pixels (default 384)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, nargs=2, default=(5, 3), metavar=("B1", "B8"))
    parser.add_argument("--train", type=int, default=128, help="synthetic crops that train the heads")
    parser.add_argument("--held-out", type=int, default=128, help="held-out crops of the agreement check")
    parser.add_argument("--calib-count", type=int, default=400,
                        help="INT8 calibration crops (half held out by the gate; 378 make 0.98 reachable)")  # fmt: skip
    parser.add_argument("--nncf-python", type=Path, default=None,
                        help="a Python with nncf (and facesdk) installed: adds NNCF INT8 rows")  # fmt: skip
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--tiny", action="store_true", help="64 px, depth 2: a smoke run in seconds")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    size, kwargs = (64, {"depth": 2}) if args.tiny else (args.size, {})
    cpu = cpu_info()
    load_start = os.getloadavg()[0]
    print(f"CPU: {cpu['model']}; flags: {', '.join(cpu['flags'])}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fast_path-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ckpt, held, preprocess = build_standin(work, size, kwargs, args.train, args.held_out)
        np.save(work / "held_out.npy", held)
        built = export_all(ckpt, work, preprocess, args)
        specs = path_specs(built["graphs"], work, tuple(args.reps))
        rows = summarize(specs, measure(specs, work / "held_out.npy", args.rounds))
        passing = [r for r in rows if r["passes_gate"]]
        best = min(passing, key=lambda r: r["ratio_b8"]) if passing else None
        profile = profile_best(next(s for s in specs if s["label"] == best["label"])) if best else None
    meta = {
        "command": "python -m benchmarks.fast_path " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu, "versions": _versions(), "size": size, "rounds": args.rounds, "reps": list(args.reps),
        "held_out": len(held), "kwargs_note": f" ({kwargs})" if kwargs else "",
        "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)],
        "gate": built["gate"], "variants": built["variants"], "nncf": built["nncf"],
        "calib_count": built["calib_count"], "profile": profile,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_report(args.out, rows, meta)
    print(args.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
