"""Helpers for tests across stages: a tiny torch-free ONNX attribute model in an export directory.

``make_tiny_export(directory)`` writes ``model.onnx`` (input ``input`` float32
[batch, 3, S, S] -> GlobalAveragePool -> Flatten -> one MatMul + Add per task) and a valid
``export.json``; the ONNX file also carries the manifest's metadata_props, so it works as a
lone file, with its own digest (``facesdk.integrity``). Needs the ``onnx`` package (``[export]`` or ``[dev]`` extra).

:class:`CountingBackend` (records every batch, can fail on a given call) and
:class:`ScriptedDetector` (boxes per frame index, the index read from the frame's pixels)
let stream tests count backbone work without a model.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import BackendError, require
from .export_manifest import ExportManifest, ModelEntry, TensorSpec
from .integrity import stamp_onnx_digest
from .manifest_io import FileEntry
from .preprocess import CropPolicy, Preprocess
from .results import Detection
from .tasks import DEFAULT_TASKS, TaskSpec

__all__ = ["CountingBackend", "ScriptedDetector", "index_frame", "make_tiny_export", "tiny_manifest"]


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


class CountingBackend:
    """A backend that records each batch size and returns fixed logits (uniform probabilities).

    Args:
        tasks: The tasks whose logits it returns.
        max_batch: Largest batch accepted.
        fail_on_call: Raise :class:`BackendError` on this call (1-based), if given.
        delay_s: Sleep this long per call (to make a slow backbone).
    """

    name = "counting"

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        max_batch: int = 8,
        fail_on_call: int | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.tasks, self.max_batch, self.fail_on_call, self.delay_s = (
            tuple(tasks),
            max_batch,
            fail_on_call,
            delay_s,
        )
        self.calls: list[int] = []
        self._lock = threading.Lock()

    @property
    def crops(self) -> int:
        """Faces run so far."""
        return sum(self.calls)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            self.calls.append(len(batch))
            if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
                raise BackendError(f"counting backend: failing on call {self.fail_on_call} as asked")
        if self.delay_s:
            time.sleep(self.delay_s)
        return {t.name: np.zeros((len(batch), t.num_classes), np.float32) for t in self.tasks}

    def close(self) -> None:
        pass


def index_frame(index: int, size: tuple[int, int] = (240, 640)) -> np.ndarray:
    """A gray BGR frame of ``size`` (h, w) whose first two pixels encode ``index`` (< 65536)."""
    frame = np.full((*size, 3), 128, np.uint8)
    frame[0, 0, 0], frame[0, 0, 1] = index % 256, index // 256
    return frame


class ScriptedDetector:
    """A detector whose faces per frame come from ``script(index) -> boxes``.

    The frame index is read from pixels written by :func:`index_frame`. Each box (x, y, w, h)
    becomes a :class:`Detection` with score ``score`` (or the box's fifth value) and
    landmarks at the usual places inside the box.
    """

    def __init__(self, script: Callable[[int], Sequence[Sequence[float]]], score: float = 0.9) -> None:
        self.script, self.score = script, score
        self.frames: list[int] = []

    def detect(self, frame: np.ndarray) -> list[Detection]:
        index = int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1])
        self.frames.append(index)
        out = []
        for box in self.script(index):
            x, y, w, h = (float(v) for v in box[:4])
            marks = ((0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8))
            out.append(
                Detection(
                    box=(x, y, w, h),
                    score=float(box[4]) if len(box) > 4 else self.score,
                    landmarks=tuple((x + u * w, y + v * h) for u, v in marks),
                )
            )
        return out
