"""Backbone time per face at each input resolution of the PE edge model (224, 288, 384 px).

One command:

    python -m benchmarks.resolution --out docs/benchmarks/resolution

For each size it builds a random-init ``vit_pe_core_tiny_patch16_384`` checkpoint with
``model.kwargs.img_size`` (what ``configs/pe_core_t16_dora_{224,288}.yaml`` set), exports it with
``facesdk export build``'s pipeline (checking that the checkpoint and the export carry the size),
and times ONNX Runtime FP32 and, where the CPU has BF16, OpenVINO BF16 (static batch buckets, the
half-rotation graph: ``benchmarks/fast_path.py``'s fastest path) at batch 1 and 8, each path in its
own process, 2 threads, in alternating rounds (``facesdk.bench``, through ``fast_path``'s worker);
it prints milliseconds per face per resolution.
Speed only: what a lower resolution costs in accuracy must be measured on FairFace/RAF-DB with
``facesdk eval`` by whoever has the data.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from facesdk.bench.timing import summarise

from . import fast_path as fp

log = logging.getLogger("resolution")


def export_at(size: int, work: Path, kwargs: dict[str, Any]) -> Path:
    """A random-init PE-T checkpoint at ``size`` px, exported; returns the export directory."""
    import torch

    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import build_model, save_checkpoint

    torch.manual_seed(0)
    backbone = BackboneSpec("vit_pe_core_tiny_patch16_384", "random", {"img_size": size, **kwargs})
    heads = {t.name: HeadSpec() for t in DEFAULT_TASKS}
    model, preprocess, method = build_model(backbone, DEFAULT_TASKS, heads, MethodSpec("full", {}))
    ckpt = work / f"ckpt_{size}"
    written = save_checkpoint(model, ckpt, backbone=backbone, preprocess=preprocess, tasks=DEFAULT_TASKS,
                              method=method, heads=heads)  # fmt: skip
    assert tuple(written.preprocess.input_size) == (size, size), "the checkpoint does not carry the size"
    out = work / f"export_{size}"
    manifest = run_export(ExportOptions(ckpt=ckpt, out=out, max_batch=8, force=True))
    assert tuple(manifest.input.shape[2:]) == (size, size), "the export does not carry the size"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("docs/benchmarks/resolution"), help="report path stem"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 288, 384])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, nargs=2, default=(5, 3), metavar=("B1", "B8"))
    parser.add_argument("--depth", type=int, default=None, help="fewer blocks (smoke runs only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cpu = fp.cpu_info()
    print(f"CPU: {cpu['model']}; flags: {', '.join(cpu['flags'])}", flush=True)
    bf16 = fp._have_openvino() and bool({"avx512_bf16", "amx_bf16"} & set(cpu["flags"]))
    paths = [("onnxruntime fp32", "onnxruntime", None)] + (
        [("openvino bf16 static", "openvino", "bf16")] if bf16 else []
    )
    kwargs = {"depth": args.depth} if args.depth else {}
    with tempfile.TemporaryDirectory(prefix="resolution-") as tmp:
        exports = {s: export_at(s, Path(tmp), kwargs) for s in args.sizes}
        specs = [
            {"label": f"{s} px / {name}", "size": s, "path": name, "export": str(exports[s]), "runtime": runtime,
             "file": str(exports[s] / "model.onnx"), "hint": hint, "static": True, "reps1": args.reps[0],
             "reps8": args.reps[1], "threads": fp.THREADS}
            for s in args.sizes for name, runtime, hint in paths
        ]  # fmt: skip
        table = {
            (r["label"], r["batch"]): r["p50_ms"] for r in summarise(fp.measure(specs, None, args.rounds))
        }
    rows = []
    for spec in sorted(specs, key=lambda s: (s["size"], s["path"])):
        size, path = spec["size"], spec["path"]
        b1, b8 = table[spec["label"], 1], table[spec["label"], 8]
        ref = f"{max(args.sizes)} px / {path}"
        rows.append({"size": size, "path": path, "ms_b1": b1, "ms_b8": b8, "ms_per_face_b8": b8 / 8,
                     "vs_largest_b1": b1 / table[ref, 1], "vs_largest_b8": b8 / table[ref, 8]})  # fmt: skip
    command = "python -m benchmarks.resolution " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# Backbone time per face by input resolution (PE-T)",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"- CPU: {cpu['model']} ({cpu['cores']} cores seen), flags: {', '.join(cpu['flags'])}; {fp.THREADS} "
        "threads per path, each path in its own process",
        f"- model: random-init `vit_pe_core_tiny_patch16_384` with `img_size` set{f' ({kwargs})' if kwargs else ''}, "
        "exported with the half-rotation RoPE graph; speed does not depend on the weights",
        f"- {args.rounds} alternating rounds (`facesdk.bench`), medians over all rounds; a shared, noisy "
        "machine: compare within this table",
        "- accuracy is not measured here: run `facesdk eval` on FairFace/RAF-DB for each size",
        "",
        "| size | path | batch 1 ms | batch 8 ms | ms per face (batch 8) | x largest size (b1) | x largest size (b8) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['size']} px | {row['path']} | {row['ms_b1']:.1f} | {row['ms_b8']:.1f} | "
            f"{row['ms_per_face_b8']:.1f} | {row['vs_largest_b1']:.2f} | {row['vs_largest_b8']:.2f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(
        json.dumps({"command": command, "cpu": cpu, "rows": rows}, indent=2)
    )
    print(args.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
