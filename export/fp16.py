"""FP16 ONNX for TensorRT's strongly typed networks: fp16 weights and matmuls, fp32 where it matters.

TensorRT 11 has no FP16 builder flag: the precision of every tensor comes from the ONNX
graph. This module converts ``model.onnx`` into ``model.fp16.onnx`` with
``onnxruntime.transformers.float16`` (installed with onnxruntime; onnxconverter-common is
not needed), keeping the graph's inputs and outputs float32 and LayerNormalization and
Softmax (and the converter's own default block list) in float32.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ExportError

__all__ = ["FP32_OPS", "convert_to_fp16", "fp32_kept_ops", "check_fp16_graph"]

log = logging.getLogger(__name__)

FP32_OPS: tuple[str, ...] = ("LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Erf")
"""Ops kept in float32: normalisation and softmax reductions overflow or lose precision in fp16.

Erf (GELU) is kept too: its fp16 kernel is missing on ONNX Runtime's CPU provider, which
the export uses to check the converted graph.
"""


def convert_to_fp16(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], keep_fp32: Sequence[str] = FP32_OPS
) -> Path:
    """Write an fp16 copy of ``src`` to ``dst`` with fp32 I/O and ``keep_fp32`` ops in fp32.

    Args:
        src: The fp32 ONNX model.
        dst: Destination file.
        keep_fp32: Op types left in float32 (added to the converter's default block list).
    """
    import onnx
    from onnxruntime.transformers import float16

    model = onnx.load(str(src))
    block = sorted({*float16.DEFAULT_OP_BLOCK_LIST, *keep_fp32})
    chatty = logging.getLogger(float16.__name__)
    level = chatty.level
    chatty.setLevel(logging.WARNING)  # it logs every shared initializer at INFO
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    except Exception as exc:  # the converter raises assorted errors on graphs it cannot type
        raise ExportError(f"converting {src} to fp16 failed: {exc}") from exc
    finally:
        chatty.setLevel(level)
    for key, value in {p.key: p.value for p in model.metadata_props}.items():
        if key not in {p.key for p in converted.metadata_props}:
            converted.metadata_props.add(key=key, value=value)
    dst = Path(dst)
    onnx.save(converted, str(dst))
    check_fp16_graph(dst, keep_fp32)
    log.info(
        "wrote %s (%.1f MB, fp16 with fp32 %s)", dst.name, dst.stat().st_size / 1e6, ", ".join(keep_fp32)
    )
    return dst


def _elem_types(model: Any) -> dict[str, int]:
    types: dict[str, int] = {i.name: i.data_type for i in model.graph.initializer}
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        types[info.name] = info.type.tensor_type.elem_type
    return types


def fp32_kept_ops(
    path: str | os.PathLike[str], op_types: Sequence[str] = ("LayerNormalization", "Softmax")
) -> dict[str, bool]:
    """For each op type, whether every such node reads and writes float32 (from shape inference)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = _elem_types(model)
    result: dict[str, bool] = {}
    for op in op_types:
        nodes = [n for n in model.graph.node if n.op_type == op]
        tensors = [t for n in nodes for t in [n.input[0], n.output[0]]]
        result[op] = bool(nodes) and all(types.get(t) == onnx.TensorProto.FLOAT for t in tensors)
    return result


def check_fp16_graph(path: str | os.PathLike[str], keep_fp32: Sequence[str] = FP32_OPS) -> None:
    """Check that I/O are float32, that MatMul weights are fp16 and LayerNorm/Softmax stay fp32.

    Raises:
        ExportError: The graph does not have that shape.
    """
    import onnx

    model = onnx.load(str(path))
    io = [*model.graph.input, *model.graph.output]
    not_float = [v.name for v in io if v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT]
    if not_float:
        raise ExportError(f"{path}: inputs/outputs {not_float} are not float32 after fp16 conversion")
    halves = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    if not halves:
        raise ExportError(f"{path}: no fp16 weights after conversion")
    kept = fp32_kept_ops(path, [op for op in ("LayerNormalization", "Softmax") if op in keep_fp32])
    wrong = [op for op, ok in kept.items() if not ok]
    if wrong:
        raise ExportError(f"{path}: {wrong} are not float32 after fp16 conversion")
