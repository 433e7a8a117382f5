"""Model complexity: parameters and FLOPs from torch, multiply-accumulates from the ONNX graph.

Conventions (also in ``docs/export.md``): one multiply-accumulate (MAC) is two floating
point operations, so ``GFLOPs = 2 x GMACs``. ``torch.utils.flop_counter.FlopCounterMode``
reports FLOPs of matrix products and convolutions (elementwise ops, softmax and norms are
not counted); the ONNX count covers MatMul, Gemm and Conv nodes, so the two agree closely.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .errors import ExportError
from .onnx_export import disable_fused_attn

__all__ = ["FLOPS_REL_TOLERANCE", "count_params", "torch_flops", "onnx_macs", "complexity_record"]

log = logging.getLogger(__name__)

FLOPS_REL_TOLERANCE = 0.02
"""Largest relative difference allowed between the torch FLOPs and 2 x the ONNX MACs."""


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def torch_flops(model: nn.Module, input_size: tuple[int, int], batch: int = 1) -> int:
    """FLOPs of one forward pass at ``batch``, counted by ``FlopCounterMode``.

    Fused attention is switched off first: on CPU the counter sees no FLOPs inside
    ``scaled_dot_product_attention``, which would drop the attention products.
    """
    from torch.utils.flop_counter import FlopCounterMode

    disable_fused_attn(model)
    x = torch.zeros(batch, 3, *input_size)
    counter = FlopCounterMode(display=False)
    # The counter's module tracker hooks tensors that require grad; a trainable parameter used
    # as an activation (the attention pool's latent) then fails under no_grad. Freeze meanwhile.
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        for param in trainable:
            param.requires_grad_(False)
        with counter, torch.no_grad():
            model.eval()(x)
    finally:
        for param in trainable:
            param.requires_grad_(True)
    return int(counter.get_total_flops())


def _shape_map(model: Any) -> dict[str, list[int | None]]:
    shapes: dict[str, list[int | None]] = {}
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _matmul_macs(a: Sequence[int | None], b: Sequence[int | None]) -> int | None:
    if None in a or None in b or not a or not b:
        return None
    a, b = list(a), list(b)
    if len(b) == 1:  # matrix x vector
        return math.prod(a)
    batch_a, batch_b = a[:-2], b[:-2]
    width = max(len(batch_a), len(batch_b))
    batch_a = [1] * (width - len(batch_a)) + batch_a
    batch_b = [1] * (width - len(batch_b)) + batch_b
    batch = math.prod(max(x, y) for x, y in zip(batch_a, batch_b, strict=True))
    rows = a[-2] if len(a) >= 2 else 1
    return batch * rows * a[-1] * b[-1]


def _node_macs(node: Any, shapes: dict[str, list[int | None]]) -> int | None:
    ins = [shapes.get(name) for name in node.input]
    if node.op_type == "MatMul":
        return _matmul_macs(ins[0] or [], ins[1] or [])
    if node.op_type == "Gemm":
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        a, b = ins[0], ins[1]
        if not a or not b or None in a or None in b:
            return None
        m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
        n = b[0] if trans_b else b[1]
        return int(m * k * n)
    if node.op_type == "Conv":
        out, weight = shapes.get(node.output[0]), ins[1]
        if not out or not weight or None in out or None in weight:
            return None
        return math.prod(out) * math.prod(weight[1:])  # type: ignore[arg-type]
    return 0


def onnx_macs(path: str | os.PathLike[str], batch: int = 1) -> int:
    """Multiply-accumulates of MatMul, Gemm and Conv nodes at ``batch``, from shape inference.

    Raises:
        ExportError: A counted node's shapes could not be inferred.
    """
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = onnx.load(str(path))
    for dim in model.graph.input[0].type.tensor_type.shape.dim[:1]:
        dim.ClearField("dim_param")
        dim.dim_value = int(batch)
    # ONNX's own inference (with constant propagation) first: with the batch fixed every
    # shape is static. ONNX Runtime's symbolic inference is the fallback for graphs where
    # that leaves a counted node unknown; it in turn fails on some graphs (RoPE's Expand).
    inferred, shapes = model, _shape_map(model)
    total, unknown = 0, ["<no shape inference ran>"]
    for infer in (
        lambda m: onnx.shape_inference.infer_shapes(m, data_prop=True),
        lambda m: SymbolicShapeInference.infer_shapes(m, auto_merge=True),
    ):
        try:
            inferred = infer(model)
        except Exception as exc:  # noqa: BLE001 (either engine may fail on a graph; try the other)
            log.debug("shape inference failed: %s", exc)
            continue
        shapes = _shape_map(inferred)
        total, unknown = 0, []
        for node in inferred.graph.node:
            macs = _node_macs(node, shapes)
            if macs is None:
                unknown.append(node.name or node.op_type)
            else:
                total += macs
        if not unknown:
            break
    if unknown:
        total, unknown = _count_with_runtime_shapes(inferred, shapes, batch)
    if unknown:
        raise ExportError(
            f"{path}: could not infer shapes of {len(unknown)} counted node(s), e.g. {unknown[:3]}"
        )
    return int(total)


def _count_with_runtime_shapes(
    model: Any, shapes: dict[str, list[int | None]], batch: int
) -> tuple[int, list[str]]:
    """Count again after running the graph once for the shapes inference left open.

    Static inference cannot follow every shape computation (timm's attention pool expands
    its latent by a shape built through ``Where``). The inputs of the nodes still unknown
    become extra graph outputs, ONNX Runtime runs the graph on a zero batch, and their
    real shapes fill the gaps; only those tensors are kept, so memory stays small.
    """
    import numpy as np
    import onnx

    from facesdk.backends.onnxruntime import create_session

    pending = [n for n in model.graph.node if _node_macs(n, shapes) is None]
    wanted = sorted(
        {name for n in pending for name in n.input if name and None in (shapes.get(name) or [None])}
    )
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for name in wanted:
        if name not in known:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = create_session(probe.SerializeToString(), ["CPUExecutionProvider"], optimize=False)
    feed = {}
    for inp in session.get_inputs():
        dims = [batch if not isinstance(d, int) else d for d in inp.shape]
        feed[inp.name] = np.zeros(dims, dtype=np.float32)
    values = session.run(wanted, feed)
    shapes = {**shapes, **{name: list(v.shape) for name, v in zip(wanted, values, strict=True)}}
    total, unknown = 0, []
    for node in model.graph.node:
        macs = _node_macs(node, shapes)
        if macs is None:
            unknown.append(node.name or node.op_type)
        else:
            total += macs
    return total, unknown


def complexity_record(
    merged: nn.Module,
    unmerged: nn.Module,
    input_size: tuple[int, int],
    onnx_path: str | os.PathLike[str] | None = None,
    rel_tolerance: float = FLOPS_REL_TOLERANCE,
) -> dict[str, Any]:
    """The manifest's ``complexity`` field: parameters, GFLOPs and the ONNX GMACs cross-check.

    Raises:
        ExportError: The torch and ONNX counts differ by more than ``rel_tolerance``.
    """
    record: dict[str, Any] = {
        "batch": 1,
        "units": "GFLOPs = 2 x GMACs; FLOPs of matmul/conv only (torch FlopCounterMode)",
        "merged": {"params": count_params(merged), "gflops": torch_flops(merged, input_size) / 1e9},
        "unmerged": {"params": count_params(unmerged), "gflops": torch_flops(unmerged, input_size) / 1e9},
    }
    if onnx_path is not None:
        gmacs = onnx_macs(onnx_path) / 1e9
        torch_g = record["merged"]["gflops"]
        rel = abs(2 * gmacs - torch_g) / max(torch_g, 1e-12)
        record["onnx"] = {
            "gmacs": gmacs,
            "gflops": 2 * gmacs,
            "rel_diff_vs_torch": rel,
            "tolerance": rel_tolerance,
        }
        if rel > rel_tolerance:
            raise ExportError(
                f"FLOP counts disagree: torch {torch_g:.4f} GFLOPs vs ONNX 2 x {gmacs:.4f} GMACs "
                f"(relative difference {rel:.3f} > {rel_tolerance}); the exported graph differs from the model"
            )
    log.info(
        "complexity: merged %.4f GFLOPs, unmerged %.4f GFLOPs",
        record["merged"]["gflops"],
        record["unmerged"]["gflops"],
    )
    return record
