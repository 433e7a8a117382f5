"""Graph variants the fast-path benchmark tries beyond the shipped RoPE layouts (#20, item 5).

Each is an exact rewrite of the half-rotation graph, built here from the same checkpoint and
compared with the shipped graph side by side in ``benchmarks/fast_path.py``; none is shipped
unless that table shows it pays (docs/openvino.md says what it showed):

* ``rope_all_tokens``: rotary embeddings applied to every token, with identity rows (sin 0,
  cos 1) for the prefix (class) token, instead of splitting the prefix off and concatenating it
  back in every attention block. Exact: ``x * 1 + rot(x) * 0 == x``.
* ``attention23``: the torch ``dynamo`` exporter at opset 23 with timm's fused attention kept,
  so each block's attention is one ONNX ``Attention`` node (the shipped graph is opset 18 with
  attention as MatMul/Softmax/MatMul, which TensorRT needs).
* NNCF INT8 (``nncf_quantize``): OpenVINO's own post-training quantization of the half graph to
  an OpenVINO IR, run in an environment that has ``nncf`` (not a facesdk dependency).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("fast_path.variants")

VARIANTS = ("rope_all_tokens", "attention23")


def rope_on_all_tokens(model: Any) -> int:
    """Make every RoPE attention of timm's Eva backbones in ``model`` rotate all tokens; return the count.

    The backbone's ``_pos_embed`` is wrapped so the rotary table it hands to the blocks gets
    ``num_prefix_tokens`` identity rows in front, and each attention's prefix count becomes 0.
    """
    import torch

    count = 0
    for module in model.modules():
        blocks = getattr(module, "blocks", None)
        if getattr(module, "rope", None) is None or blocks is None or getattr(module, "rope_mixed", False):
            continue
        prefix = int(getattr(module, "num_prefix_tokens", 0))
        if prefix == 0:
            continue
        original = module._pos_embed

        def pos_embed(x: torch.Tensor, original: Any = original, prefix: int = prefix) -> Any:
            x, rope = original(x)
            if rope is None:
                return x, rope
            half = rope.shape[-1] // 2
            lead = rope.shape[:-2]
            identity = torch.cat(
                [rope.new_zeros(*lead, prefix, half), rope.new_ones(*lead, prefix, half)], -1
            )
            return x, torch.cat([identity, rope], -2)

        module._pos_embed = pos_embed
        for block in blocks:
            block.attn.num_prefix_tokens = 0
            count += 1
    return count


def _half_graph(ckpt: Path) -> tuple[Any, Any, tuple[int, int], list[str]]:
    """(original merged model, half-rotation copy, input size, task names), as the export builds them."""
    from facesdk.export.merge import merge_adapters
    from facesdk.export.pipeline import load_for_export
    from facesdk.export.rewrite import rewrite_for_export

    model, manifest = load_for_export(ckpt)
    size = tuple(manifest.preprocess.input_size)
    merged = merge_adapters(model).eval()
    graph, report = rewrite_for_export(merged, "half", size)
    log.info("half-rotation rewrite: %s", report.to_json())
    return merged, graph, size, [t.name for t in manifest.tasks]


def build_variant(name: str, ckpt: Path, out: Path, max_batch: int) -> dict[str, Any]:
    """Export variant ``name`` of the checkpoint's half graph to ``out``; return its record."""
    import copy
    import warnings

    import onnx
    import torch

    from facesdk.export.onnx_export import INPUT_NAME, TupleOutputs, compare_onnx_torch, export_onnx

    merged, graph, size, names = _half_graph(ckpt)
    variant = copy.deepcopy(graph)
    if name == "rope_all_tokens":
        changed = rope_on_all_tokens(variant)
        export_onnx(variant, out, input_size=size, output_names=names, opset=18, max_batch=max_batch)
    elif name == "attention23":
        fused = [m for m in variant.modules() if hasattr(m, "fused_attn")]
        for module in fused:  # one scaled_dot_product_attention per block -> one ONNX Attention node
            module.fused_attn = True
        changed = len(fused)
        batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                TupleOutputs(variant, names).eval(), (torch.randn(2, 3, *size),), str(out), dynamo=True,
                opset_version=23, input_names=[INPUT_NAME], output_names=names,
                dynamic_shapes={"x": {0: batch}}, external_data=False, verbose=False,
            )  # fmt: skip
    else:
        raise ValueError(f"unknown variant {name!r}; choose from {VARIANTS}")
    # the exported file against the original (interleaved, unrewritten) model: raises beyond 1e-4
    parity = compare_onnx_torch(merged, out, input_size=size, output_names=names, batches=(1, 2))
    ops = Counter(node.op_type for node in onnx.load(str(out), load_external_data=False).graph.node)
    record = {
        "variant": name, "modules_changed": changed, "onnx_vs_torch": parity, "nodes": sum(ops.values()),
        "ops": {k: ops[k] for k in ("Attention", "MatMul", "Softmax", "Slice", "Concat")},
    }  # fmt: skip
    log.info("variant %s: %s", name, record)
    return record


def nncf_quantize(model: Path, crops: Path, out: Path) -> dict[str, Any]:
    """NNCF INT8 of ``model`` (ONNX) calibrated on ``crops`` (.npy), saved as OpenVINO IR ``out``."""
    import time

    import nncf
    import openvino as ov

    data = np.load(crops)
    start = time.perf_counter()
    fp32 = ov.Core().read_model(str(model))
    dataset = nncf.Dataset([data[i : i + 1] for i in range(len(data))])
    int8 = nncf.quantize(fp32, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(data))
    ov.save_model(int8, str(out))
    return {"nncf": nncf.__version__, "crops": len(data), "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.graph_variants nncf MODEL CROPS OUT``: the NNCF step, in an env with nncf."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=("nncf",))
    parser.add_argument("model", type=Path)
    parser.add_argument("crops", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(nncf_quantize(args.model, args.crops, args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
