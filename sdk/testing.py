"""Helpers for tests across stages: a tiny torch-free ONNX attribute model in an export directory.

``make_tiny_export(directory)`` writes ``model.onnx`` (input ``input`` float32
[batch, 3, S, S] -> GlobalAveragePool -> Flatten -> one MatMul + Add per task) and a valid
``export.json``; the ONNX file also carries the manifest's metadata_props, so it works as a
lone file, with its own digest (``facesdk.integrity``). Needs the ``onnx`` package (``[export]`` or ``[dev]`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import require
from .export_manifest import ExportManifest, ModelEntry, TensorSpec
from .integrity import stamp_onnx_digest
from .manifest_io import FileEntry
from .preprocess import CropPolicy, Preprocess
from .tasks import DEFAULT_TASKS, TaskSpec

__all__ = ["make_tiny_export", "tiny_manifest"]


def tiny_manifest(
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    size: int = 32,
    max_batch: int = 8,
    crop: CropPolicy | None = None,
    models: dict[str, ModelEntry] | None = None,
) -> ExportManifest:
    """The manifest of the tiny model (without model entries unless given)."""
    return ExportManifest(
        tasks=tuple(tasks),
        preprocess=Preprocess(input_size=(size, size), interpolation="bilinear", crop=crop or CropPolicy()),
        input=TensorSpec("input", ("batch", 3, size, size)),
        outputs=tuple(TensorSpec(t.name, ("batch", t.num_classes)) for t in tasks),
        batch=(1, max_batch),
        opset=18,
        models=models or {},
        source={"kind": "tiny-test-model"},
    )


def make_tiny_export(
    directory: str | os.PathLike[str],
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    size: int = 32,
    max_batch: int = 8,
    crop: CropPolicy | None = None,
    seed: int = 0,
) -> ExportManifest:
    """Write a tiny random-weight ONNX model and its ``export.json`` into ``directory``."""
    onnx = require("onnx", "export", "building the tiny test model")
    from onnx import TensorProto, helper, numpy_helper

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
    ]
    inits, outputs = [], []
    for task in tasks:
        w = rng.normal(0, 2.0, size=(3, task.num_classes)).astype(np.float32)
        b = rng.normal(0, 0.5, size=(task.num_classes,)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"{task.name}_w"), numpy_helper.from_array(b, f"{task.name}_b")]
        nodes += [
            helper.make_node("MatMul", ["features", f"{task.name}_w"], [f"{task.name}_mm"]),
            helper.make_node("Add", [f"{task.name}_mm", f"{task.name}_b"], [task.name]),
        ]
        outputs.append(
            helper.make_tensor_value_info(task.name, TensorProto.FLOAT, ["batch", task.num_classes])
        )
    graph = helper.make_graph(
        nodes,
        "tiny_attributes",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    manifest = tiny_manifest(tasks, size, max_batch, crop)
    helper.set_model_props(model, manifest.onnx_metadata())
    onnx.checker.check_model(model)
    onnx.save(model, str(directory / "model.onnx"))
    stamp_onnx_digest(directory / "model.onnx")
    entry = ModelEntry(file=FileEntry.of(directory, "model.onnx"), format="onnx", precision="fp32")
    manifest = tiny_manifest(tasks, size, max_batch, crop, models={"onnx-fp32": entry})
    manifest.write(directory)
    return manifest
