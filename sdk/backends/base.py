"""The inference backend protocol, the backend registry and shared checks.

A backend runs the attribute model on a preprocessed batch (N x 3 x H x W float32) and
returns one logits array per task. Backends are context managers that own their resources
(like Polygraphy runners) and check the model's own tensors against the manifest on load.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from ..arguments import check_options
from ..contract.export_manifest import ExportManifest
from ..errors import BackendError, ConfigError, ModelMismatchError
from ..plugins import load_plugin, plugin_names

__all__ = [
    "Backend",
    "DEFAULT_CLASSIFIER_BATCH",
    "stream_batch",
    "parallel_calls",
    "BACKENDS",
    "ClosingBackend",
    "check_io",
    "create_backend",
    "register_backend",
    "run_batched",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class Backend(Protocol):
    """What the Analyzer needs from an inference backend.

    Attributes:
        name: Short name (``"onnxruntime"``, ``"openvino"``, ``"tensorrt"``, ``"torch"``) with details
            (providers, precision) available through ``describe()`` where implemented.
        max_batch: Largest batch one :meth:`run` call accepts.

    Optional attributes the runtime reads where present: ``preferred_batch`` and
    ``batch_buckets`` (:func:`stream_batch`), ``parallel_calls`` (:func:`parallel_calls`: a
    backend whose :meth:`run` is safe and faster from several threads at once says how many),
    ``worker_threads`` (native threads a stream's classifier may lower in priority).
    """

    name: str
    max_batch: int

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch (``1 <= N <= max_batch``); return ``{task: N x classes logits}``."""
        ...

    def close(self) -> None:
        """Free the backend's resources; further calls to :meth:`run` are errors."""
        ...


class ClosingBackend:
    """Mixin: ``with backend:`` closes the backend on exit (the subclass defines :meth:`close`)."""

    def close(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Factory = Callable[..., Backend]

# kind -> "module:attribute" of a factory(manifest, path, **opts); imported on first use so
# that selecting onnxruntime never imports tensorrt. Backends a stage owns (``torch``, the
# training stage's) are entry points of group ``facesdk.backends`` (see facesdk.plugins).
BACKENDS: dict[str, str] = {
    "onnxruntime": "facesdk.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "facesdk.backends.openvino:OpenVinoBackend",
    "tensorrt": "facesdk.backends.tensorrt:TensorRTBackend",
}
PLUGIN_BACKENDS = {"torch": "train"}
"""Backends registered by a stage as entry points, with the extra that installs them."""


def register_backend(kind: str, target: str | Factory) -> None:
    """Register a backend factory under ``kind`` ("module:attr" string or a callable)."""
    _EXTRA[kind] = target


_EXTRA: dict[str, str | Factory] = {}


def _resolve(kind: str) -> Factory:
    target = _EXTRA.get(kind) or BACKENDS.get(kind)
    if target is None and (kind in PLUGIN_BACKENDS or kind in plugin_names("backends")):
        return load_plugin("backends", kind, PLUGIN_BACKENDS.get(kind, "train"))
    if target is None:
        known = sorted({*BACKENDS, *_EXTRA, *PLUGIN_BACKENDS})
        raise ConfigError(f"unknown backend {kind!r}; expected one of {known} or 'auto'")
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def create_backend(kind: str, manifest: ExportManifest, path: str | os.PathLike[str], **opts: Any) -> Backend:
    """Build a backend of ``kind`` for the model file (or checkpoint dir) at ``path``."""
    factory = _resolve(kind)
    check_options(factory, f"backend {kind!r}", opts)
    backend = factory(manifest, path, **opts)
    logger.info("backend %s for %s", backend.name, path)
    return backend


def _dims_match(found: Sequence[Any], expected: Sequence[Any]) -> bool:
    if len(found) != len(expected):
        return False
    for f, e in zip(found, expected, strict=True):
        if isinstance(e, int) and isinstance(f, int) and f >= 0 and f != e:
            return False
    return True


def _static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None


def _check_declared_sizes(
    source: str,
    manifest: ExportManifest,
    inputs: Mapping[str, Sequence[Any]],
    outputs: Mapping[str, Sequence[Any]],
) -> None:
    """The manifest's input size and label counts against the model's own tensors."""
    shape = list(inputs.get(manifest.input.name, ()))
    if len(shape) == 4:
        found = (_static(shape[2]), _static(shape[3]))
        want = tuple(manifest.preprocess.input_size)
        if any(f is not None and f != w for f, w in zip(found, want, strict=True)):
            raise ModelMismatchError(
                f"{source}: field preprocess.input_size of its manifest is {list(want)} but the model's input "
                f"shape is {shape}: the manifest does not describe this model; re-export it"
            )
    for i, task in enumerate(manifest.tasks):
        out = list(outputs.get(task.name, ()))
        if len(out) == 2 and _static(out[1]) is not None and out[1] != task.num_classes:
            raise ModelMismatchError(
                f"{source}: field tasks[{i}].labels of its manifest lists {task.num_classes} labels for "
                f"{task.name!r} but the model's output shape is {out}: the manifest does not describe this "
                "model; re-export it"
            )


def check_io(
    source: str,
    manifest: ExportManifest,
    inputs: Mapping[str, Sequence[Any]],
    outputs: Mapping[str, Sequence[Any]],
) -> None:
    """Check a model's tensor names and static dims against its manifest.

    Args:
        source: The model file, for messages.
        manifest: The export manifest.
        inputs: Input name -> shape as the runtime reports it (symbolic or -1 dims pass).
        outputs: Output name -> shape.

    Raises:
        ModelMismatchError: The manifest's ``preprocess.input_size`` or a task's label count
            differs from the model's own static input or output shape (a :class:`ManifestError`
            and a :class:`BackendError`, naming the field).
        BackendError: A name is missing or a static dimension differs.
    """
    _check_declared_sizes(source, manifest, inputs, outputs)
    want = manifest.input
    if list(inputs) != [want.name]:
        raise BackendError(
            f"{source} has inputs {list(inputs)}; its manifest expects one input {want.name!r}"
        )
    expected_in = list(want.shape)
    if not _dims_match(list(inputs[want.name]), expected_in):
        raise BackendError(
            f"{source} input {want.name!r} has shape {list(inputs[want.name])}; the manifest expects {expected_in}"
        )
    for spec in manifest.outputs:
        if spec.name not in outputs:
            raise BackendError(
                f"{source} lacks output {spec.name!r} (it has {sorted(outputs)}); the manifest lists "
                f"{[o.name for o in manifest.outputs]}: re-export the model"
            )
        if not _dims_match(list(outputs[spec.name]), list(spec.shape)):
            raise BackendError(
                f"{source} output {spec.name!r} has shape {list(outputs[spec.name])}; manifest says {list(spec.shape)}"
            )


def run_batched(backend: Backend, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Run a batch of any size through ``backend``, split at its ``max_batch``, and concatenate.

    An empty batch returns empty arrays without calling the backend (with 0 classes when
    the backend was never run); callers handle zero faces before this.
    """
    if len(batch) == 0:
        return {}
    step = max(1, int(backend.max_batch))
    parts = [backend.run(np.ascontiguousarray(batch[i : i + step])) for i in range(0, len(batch), step)]
    return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}


DEFAULT_CLASSIFIER_BATCH = 8
"""Crops per backbone call in streams when the backend names no batch it runs best
(OpenVINO's largest compiled bucket, when it has buckets)."""


def parallel_calls(backend: Backend) -> int:
    """Backend calls that ``backend`` runs at once to good effect: its ``parallel_calls``
    attribute (ONNX Runtime on a CPU: 2, see :data:`facesdk.backends.onnxruntime.PARALLEL_CALLS_CPU`),
    else 1 (calls are serialised: a backend that does not say it is safe is not called twice)."""
    n = getattr(backend, "parallel_calls", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def stream_batch(backend: Backend) -> int:
    """Crops per backbone call that ``backend`` runs well: its ``preferred_batch`` (1 for ONNX
    Runtime on a CPU), else its largest compiled batch (OpenVINO's buckets), else
    :data:`DEFAULT_CLASSIFIER_BATCH`; never above its max batch. Streams batch up to this, and
    ``auto`` weighs a path's memory at it."""
    preferred = getattr(backend, "preferred_batch", None)
    buckets = getattr(backend, "batch_buckets", None)  # OpenVINO's static compiled batches
    if preferred is None and buckets:
        preferred = max(buckets)
    if isinstance(preferred, int) and preferred >= 1:
        return min(preferred, backend.max_batch)
    return max(1, min(DEFAULT_CLASSIFIER_BATCH, backend.max_batch))
