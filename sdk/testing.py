"""Helpers for tests across stages: a tiny torch-free ONNX attribute model in an export directory.

``make_tiny_export(directory)`` writes ``model.onnx`` (input ``input`` float32
[batch, 3, S, S] -> GlobalAveragePool -> Flatten -> one MatMul + Add per task) and a valid
``export.json``; the ONNX file also carries the manifest's metadata_props, so it works as a
lone file, with its own digest (``facesdk.contract.integrity``). Needs the ``onnx`` package (``[export]`` or ``[dev]`` extra).

:class:`CountingBackend` (records every batch, can fail on a given call) and
:class:`ScriptedDetector` (boxes per frame index, the index read from the frame's pixels)
let stream tests count backbone work without a model. :class:`EncodingBackend` answers each
crop with logits that encode the gray level painted into that face (:func:`painted_frame`,
read back by :func:`decode_face`), so a test can tell which face of which frame an estimate
came from: a swapped track or a frame's faces given to another frame shows.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .contract.export_manifest import ExportManifest, ModelEntry, TensorSpec
from .contract.integrity import stamp_onnx_digest
from .contract.manifest_io import FileEntry
from .errors import BackendError, require
from .preprocess import CropPolicy, Preprocess
from .results import Detection, FaceResult
from .tasks import DEFAULT_TASKS, TaskSpec

__all__ = [
    "CODE_SCALE",
    "CountingBackend",
    "EncodingBackend",
    "ScriptedDetector",
    "decode_face",
    "index_frame",
    "make_tiny_export",
    "painted_frame",
    "tiny_manifest",
]


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
        parallel_calls: When given, the backend says it runs this many calls at once
            (:func:`facesdk.backends.base.parallel_calls`); :attr:`most_at_once` records how many
            of its calls did overlap.
    """

    name = "counting"

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        max_batch: int = 8,
        fail_on_call: int | None = None,
        delay_s: float = 0.0,
        parallel_calls: int | None = None,
    ) -> None:
        self.tasks, self.max_batch, self.fail_on_call, self.delay_s = (
            tuple(tasks),
            max_batch,
            fail_on_call,
            delay_s,
        )
        if parallel_calls is not None:
            self.parallel_calls = parallel_calls
        self.calls: list[int] = []
        self.most_at_once = 0
        """The most calls of :meth:`run` that were in progress at the same time."""
        self._at_once = 0
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
            self._at_once += 1
            self.most_at_once = max(self.most_at_once, self._at_once)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
        finally:
            with self._lock:
                self._at_once -= 1
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


CODE_SCALE = 16.0
"""An :class:`EncodingBackend` logit is the crop's gray level divided by this."""


class EncodingBackend(CountingBackend):
    """A backend whose logits encode the gray level at the centre of each crop.

    Every task's first logit is ``level / CODE_SCALE`` (the others 0), where ``level`` is the
    0-255 gray level at the crop's centre, recovered from the normalised input with the model's
    preprocessing. :func:`decode_face` reads the level back from a result's probabilities.

    Args:
        tasks: The tasks whose logits it returns.
        preprocess: The model's preprocessing (to undo its normalisation).
        max_batch: Largest batch accepted.
        gate: When given, every call waits until it is set (at most ``gate_timeout_s``): a test
            holds the backbone while it watches the frame path.
        delay_s: Sleep this long per call.
    """

    name = "encoding"

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        preprocess: Preprocess,
        max_batch: int = 8,
        gate: threading.Event | None = None,
        gate_timeout_s: float = 30.0,
        delay_s: float = 0.0,
        parallel_calls: int | None = None,
    ) -> None:
        super().__init__(tasks, max_batch, delay_s=delay_s, parallel_calls=parallel_calls)
        self.preprocess, self.gate, self.gate_timeout_s = preprocess, gate, gate_timeout_s
        self.levels: list[int] = []
        """Every crop's level, in the order the crops were run."""

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.gate is not None and not self.gate.wait(self.gate_timeout_s):
            raise BackendError(f"encoding backend: the gate stayed closed for {self.gate_timeout_s:g} s")
        super().run(batch)
        h, w = batch.shape[2] // 2, batch.shape[3] // 2
        centre = batch[:, 0, h - 1 : h + 1, w - 1 : w + 1].mean(axis=(1, 2))  # red channel, normalised
        mean, std = self.preprocess.mean[0], self.preprocess.std[0]
        levels = np.rint((centre * std + mean) * 255.0)
        with self._lock:
            self.levels.extend(int(v) for v in levels)
        out = {}
        for task in self.tasks:
            logits = np.zeros((len(batch), task.num_classes), np.float32)
            logits[:, 0] = levels / CODE_SCALE
            out[task.name] = logits
        return out


def decode_face(face: FaceResult, task: str = "gender") -> int | None:
    """The gray level an :class:`EncodingBackend` saw for the crop behind this face's estimate.

    ``None`` when the face carries no estimate. Exact only without smoothing (``smoothing=0``).
    """
    pred = face.attributes.get(task)
    if pred is None:
        return None
    values = list(pred.probs.values())
    return int(round(math.log(values[0] / values[1]) * CODE_SCALE))


def painted_frame(
    index: int, boxes: Sequence[Sequence[float]], levels: Sequence[int], size: tuple[int, int] = (240, 640)
) -> np.ndarray:
    """:func:`index_frame` with each box filled with its gray level (1-255, one per face)."""
    frame = index_frame(index, size)
    for box, level in zip(boxes, levels, strict=True):
        if not 0 < level < 256:
            raise ValueError(f"gray levels must be in 1..255, got {level}")
        x, y, w, h = (int(round(float(v))) for v in box[:4])
        if x <= 0 and y <= 0:
            raise ValueError("a painted box may not cover pixel (0, 0), which holds the frame index")
        frame[y : y + h, x : x + w] = level
    return frame
