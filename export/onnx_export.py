"""Export a merged model to one ONNX graph, check it, embed metadata, and compare it with torch.

The TorchScript-based exporter (``dynamo=False``) is used: at opset 18-20 it gives plain
MatMul/Softmax attention that every runtime here (ONNX Runtime, TensorRT, OpenVINO) reads,
with outputs equal to torch within 1e-5 (see ``docs/export.md``).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facesdk.errors import ConfigError

from .errors import ExportError, ParityError

__all__ = [
    "SUPPORTED_OPSETS",
    "EXPORTERS",
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "ONNX_TOLERANCE",
    "TupleOutputs",
    "check_opset",
    "disable_fused_attn",
    "export_onnx",
    "check_onnx",
    "read_metadata",
    "ort_session",
    "compare_onnx_torch",
]

log = logging.getLogger(__name__)

SUPPORTED_OPSETS = (18, 19, 20)
DEFAULT_OPSET = 18
INPUT_NAME = "input"
ONNX_TOLERANCE = 1e-4
"""Largest absolute logit difference allowed between ONNX Runtime (CPU, fp32) and torch."""


def check_opset(opset: int) -> int:
    """Return ``opset`` if it is supported, else raise a :class:`ConfigError` saying which are."""
    if int(opset) not in SUPPORTED_OPSETS:
        raise ConfigError(
            f"opset {opset} is not supported; choose one of {list(SUPPORTED_OPSETS)} (default "
            f"{DEFAULT_OPSET}). Older opsets lack LayerNormalization; newer ones turn attention into "
            "ONNX 'Attention' ops that TensorRT and the SDK do not accept."
        )
    return int(opset)


def disable_fused_attn(model: nn.Module) -> int:
    """Switch timm's fused attention off on every module that has it; return how many changed.

    Fused attention (``scaled_dot_product_attention``) exports as one opaque op and is not
    counted by ``FlopCounterMode`` on CPU; the export always uses the explicit matmul form.
    """
    changed = 0
    for name, module in model.named_modules():
        if getattr(module, "fused_attn", None) is True:
            module.fused_attn = False
            changed += 1
            log.debug("fused attention off: %s", name)
    if changed:
        log.info("switched fused attention off on %d module(s) for export", changed)
    return changed


class TupleOutputs(nn.Module):
    """Wrap a ``{task: logits}`` model so it returns a tuple in a fixed task order."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[name] for name in self.names)


EXPORTERS = ("torchscript", "dynamo")


def _torch_export(
    wrapped: nn.Module,
    path: Path,
    names: Sequence[str],
    opset: int,
    exporter: str,
    max_batch: int,
    size: tuple[int, int],
) -> None:
    dummy = torch.randn(2, 3, *size)
    common: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": list(names),
        "opset_version": opset,
    }
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
        torch.onnx.export(wrapped, (dummy,), str(path), dynamic_shapes={"x": {0: batch}}, dynamo=True,
                          external_data=False, **common)  # fmt: skip
    else:
        axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in names}}
        torch.onnx.export(wrapped, (dummy,), str(path), dynamic_axes=axes, do_constant_folding=True, dynamo=False,
                          **common)  # fmt: skip


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_size: tuple[int, int],
    output_names: Sequence[str],
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    max_batch: int = 32,
) -> Path:
    """Export ``model`` (eval, fp32, merged) to ``path`` with a dynamic batch axis.

    Args:
        model: A module whose forward returns ``{task: logits}``.
        path: Destination ``.onnx`` file (weights inside the file).
        input_size: ``(height, width)`` of the preprocessed input.
        output_names: Task names, in output order.
        opset: ONNX opset (18-20).
        exporter: ``"torchscript"`` (``dynamo=False``, the default) or ``"dynamo"``.
        max_batch: Upper bound of the batch axis (the dynamo exporter records it).
    """
    opset = check_opset(opset)
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    path = Path(path)
    model = model.float().eval()
    disable_fused_attn(model)
    wrapped = TupleOutputs(model, output_names).eval()
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _torch_export(wrapped, path, output_names, opset, exporter, max_batch, tuple(input_size))
    except Exception as exc:  # torch raises many types here; say which step failed
        raise ExportError(f"torch.onnx.export ({exporter}) failed at opset {opset}: {exc}") from exc
    if Path(f"{path}.data").exists():
        raise ExportError(f"{path}: the exporter wrote external weights; expected them inside the file")
    log.info(
        "exported %s (%.1f MB, opset %d, %s exporter)", path.name, path.stat().st_size / 1e6, opset, exporter
    )
    return path


def check_onnx(path: str | os.PathLike[str], output_names: Sequence[str], opset: int) -> None:
    """Run ``onnx.checker`` (full check) and confirm names, dtype, dynamic batch and opset.

    Raises:
        ExportError: The graph fails the checker or its I/O differ from what was asked.
    """
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path} fails onnx.checker: {exc}") from exc
    model = onnx.load(str(path), load_external_data=False)
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != list(output_names):
        raise ExportError(
            f"{path}: I/O {inputs} -> {outputs}, expected [{INPUT_NAME}] -> {list(output_names)}"
        )
    if model.graph.input[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ExportError(f"{path}: input must be float32")
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if batch_dim.HasField("dim_value"):
        raise ExportError(f"{path}: the batch axis is fixed at {batch_dim.dim_value}; expected dynamic")
    found = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if found.get("ai.onnx") != opset:
        raise ExportError(f"{path}: opset {found.get('ai.onnx')} in the file, {opset} asked")
    bad = sorted({n.op_type for n in model.graph.node if n.op_type == "Attention"})
    if bad:
        raise ExportError(f"{path}: contains ONNX Attention ops; export with fused attention off")


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def ort_session(path: str | os.PathLike[str], threads: int = 0) -> Any:
    """An ONNX Runtime CPU session from :func:`facesdk.backends.onnxruntime.create_session` (the
    SDK's session options; ``threads`` 0 = runtime default)."""
    from facesdk.backends.onnxruntime import create_session

    return create_session(
        path, ["CPUExecutionProvider"], intra_op_threads=threads or None, inter_op_threads=1
    )


def compare_onnx_torch(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_size: tuple[int, int],
    output_names: Sequence[str],
    batches: Sequence[int],
    tolerance: float = ONNX_TOLERANCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Run ONNX Runtime and torch on random batches of each size and compare every output.

    Returns:
        ``{"max_abs_diff": x, "per_batch": {"1": x, ...}, "tolerance": t}``.

    Raises:
        ParityError: A difference exceeds ``tolerance`` or an output has the wrong shape.
    """
    session = ort_session(path)
    gen = torch.Generator().manual_seed(seed)
    per_batch: dict[str, float] = {}
    for n in dict.fromkeys(int(b) for b in batches):
        x = torch.randn(n, 3, *input_size, generator=gen)
        with torch.inference_mode():
            ref = model(x)
        got = dict(zip(output_names, session.run(list(output_names), {INPUT_NAME: x.numpy()}), strict=True))
        for name in output_names:
            if got[name].shape != tuple(ref[name].shape):
                raise ParityError(
                    f"ONNX output {name!r} has shape {got[name].shape}, torch {tuple(ref[name].shape)}"
                )
        per_batch[str(n)] = max(float(np.abs(got[k] - ref[k].numpy()).max()) for k in output_names)
    worst = max(per_batch.values())
    log.info("ONNX Runtime vs torch: max |logit diff| %.3g over batches %s", worst, list(per_batch))
    if worst > tolerance:
        raise ParityError(
            f"ONNX Runtime and torch disagree by up to {worst:.3g} (> {tolerance:g}) at batches {per_batch}; "
            "the exported graph is not the model. Try another --opset, and report the model and versions."
        )
    return {"max_abs_diff": worst, "per_batch": per_batch, "tolerance": tolerance}
