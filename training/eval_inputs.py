"""The inputs of ``facesdk eval``: ``--model``/``--data`` arguments, opening models, reading crops, logits."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facesdk.errors import ConfigError, MissingFileError
from facesdk.preprocess import Preprocess, to_input_tensor
from facesdk.progress import progress_bar
from facesdk.tasks import DEFAULT_TASKS, TaskSpec

from .datasets.manifest import ManifestRow, read_prepare_info
from .datasets.readers import get_dataset

__all__ = [
    "DataArg",
    "ModelArg",
    "baseline_label",
    "model_temperatures",
    "open_model",
    "predict",
    "predict_logits",
    "read_crops",
]

log = logging.getLogger(__name__)

_OUR_TASKS = {t.name: t for t in DEFAULT_TASKS}


@dataclass(frozen=True, slots=True)
class ModelArg:
    """``--model [NAME=]PATH[@PRECISION]``."""

    name: str
    path: Path
    precision: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelArg:
        name, sep, rest = text.partition("=")
        if not sep:
            name, rest = "", text
        path, at, precision = rest.rpartition("@")
        if not at:
            path, precision = rest, ""
        path_ = Path(path)
        if not name:
            # "runs/l14/checkpoint" is named "l14"; an export directory by its own name.
            base = path_.parent.name if path_.name == "checkpoint" and path_.parent.name else path_.name
            name = base if not precision else f"{base}@{precision}"
        return cls(name, path_, precision or None)


@dataclass(frozen=True, slots=True)
class DataArg:
    """``--data [NAME=]PATH``: a manifest CSV, or a prepared folder (its test.csv, else val.csv)."""

    dataset: str
    manifest: Path

    @classmethod
    def parse(cls, text: str) -> DataArg:
        name, sep, path = text.partition("=")
        if not sep or "/" in name:
            name, path = "", text
        manifest = Path(path)
        if manifest.is_dir():
            manifest = next(
                (manifest / f for f in ("test.csv", "val.csv") if (manifest / f).is_file()),
                manifest / "test.csv",
            )
        if not manifest.is_file():
            raise MissingFileError(f"--data {text}: {manifest} does not exist")
        if not name:
            info = read_prepare_info(manifest)
            if info is None or "dataset" not in info:
                raise ConfigError(
                    f"--data {text}: no prepare.json beside it names the dataset; use --data NAME={path}"
                )
            name = str(info["dataset"])
        try:
            name = get_dataset(name).name
        except ConfigError:
            name = name.lower()
        return cls(name, manifest)


def baseline_label(arg: ModelArg) -> str:
    """The table label of a baseline: ``NAME (zero-shot baseline)`` for a zero-shot model."""
    from facesdk.contract.checkpoint import CHECKPOINT_MANIFEST, load_checkpoint_manifest
    from facesdk.model_loader import resolve_model

    if (arg.path / CHECKPOINT_MANIFEST).is_file():
        method = load_checkpoint_manifest(arg.path, verify=False).method.name
    else:
        resolved = resolve_model(arg.path, "onnxruntime", arg.precision, verify=False)
        method = resolved.manifest.source.get("method")
    if method != "zeroshot":
        log.warning("baseline %s was made with method %r, not by 'facesdk zeroshot build'", arg.path, method)
        return f"{arg.name} (baseline)"
    return f"{arg.name} (zero-shot baseline)"


def open_model(arg: ModelArg, device: str = "cpu") -> tuple[Any, Preprocess, tuple[TaskSpec, ...]]:
    """A backend for a checkpoint (torch) or an export / ``.onnx`` (ONNX Runtime)."""
    from facesdk.backends import create_backend
    from facesdk.contract.checkpoint import CHECKPOINT_MANIFEST
    from facesdk.model_loader import resolve_model

    is_checkpoint = (arg.path / CHECKPOINT_MANIFEST).is_file()
    if is_checkpoint and arg.precision:
        raise ConfigError(
            f"--model {arg.path}@{arg.precision}: a checkpoint has no precisions; export it first"
        )
    resolved = resolve_model(arg.path, "torch" if is_checkpoint else "onnxruntime", arg.precision)
    for task in resolved.manifest.tasks:
        ours = _OUR_TASKS.get(task.name)
        if ours is not None and ours.labels != task.labels:
            raise ConfigError(
                f"{arg.path}: task {task.name!r} has labels {list(task.labels)}; manifests use {list(ours.labels)}"
            )
    opts = {"device": device} if is_checkpoint else {}
    backend = create_backend(resolved.backend, resolved.manifest, resolved.path, **opts)
    return backend, resolved.manifest.preprocess, resolved.manifest.tasks


def read_crops(rows: Sequence[ManifestRow]) -> list[np.ndarray]:
    """The BGR crops of manifest rows, read from disk."""
    crops = []
    for row in rows:
        image = cv2.imread(str(row.path), cv2.IMREAD_COLOR)
        if image is None:
            raise MissingFileError(f"crop {row.path} is missing or unreadable; re-run 'facesdk data prepare'")
        crops.append(image)
    return crops


_read_crops = read_crops


def predict_logits(
    backend: Any, preprocess: Preprocess, rows: Sequence[ManifestRow], batch_size: int, desc: str
) -> dict[str, np.ndarray]:
    """Raw logits (``N x classes``, float32, no temperature) per task for every row's crop."""
    from facesdk.backends import run_batched

    parts: dict[str, list[np.ndarray]] = {}
    for start in progress_bar(range(0, len(rows), batch_size), desc=desc, unit="batch"):
        crops = read_crops(rows[start : start + batch_size])
        for name, logits in run_batched(backend, to_input_tensor(crops, preprocess)).items():
            parts.setdefault(name, []).append(np.asarray(logits, dtype=np.float32))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def predict(
    backend: Any, preprocess: Preprocess, rows: Sequence[ManifestRow], batch_size: int, desc: str
) -> dict[str, np.ndarray]:
    """Class predictions (argmax of logits) per task for every row's crop."""
    logits = predict_logits(backend, preprocess, rows, batch_size, desc)
    return {name: values.argmax(axis=1) for name, values in logits.items()}


def model_temperatures(arg: ModelArg) -> dict[str, float]:
    """The temperatures a checkpoint or export carries (``{}``: every task 1.0)."""
    from facesdk.contract.checkpoint import CHECKPOINT_MANIFEST, load_checkpoint_manifest
    from facesdk.model_loader import resolve_model

    if (arg.path / CHECKPOINT_MANIFEST).is_file():
        return dict(load_checkpoint_manifest(arg.path, verify=False).temperatures)
    return dict(resolve_model(arg.path, "onnxruntime", arg.precision, verify=False).manifest.temperatures)
