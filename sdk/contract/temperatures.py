"""Per-task softmax temperatures: how manifests carry them and how probabilities use them.

A temperature ``T > 0`` divides a task's logits before the softmax, ``softmax(logits / T)``;
``T > 1`` softens over-confident probabilities, ``T < 1`` sharpens them, and the arg-max (the
predicted label) never changes. ``facesdk.training.temperature`` fits them on labelled data;
checkpoint and export manifests carry them in an optional ``"temperatures"`` mapping
``{task name: T}``. A task missing from the mapping, or a manifest without one (everything
written before temperatures existed), has ``T = 1.0``: plain softmax.

A temperature must lie in :data:`TEMPERATURE_RANGE`, [0.05, 20]: far outside it the float64
softmax underflows or saturates until classes tie and the arg-max falls to the first class,
so the "never changes the label" promise would break. Fits search the same range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import ManifestError

__all__ = ["TEMPERATURES_KEY", "TEMPERATURE_RANGE", "apply_temperature", "check_temperatures"]

TEMPERATURES_KEY = "temperatures"
"""The optional manifest field: ``{"age": 1.42, "gender": 0.97, ...}``."""

TEMPERATURE_RANGE = (0.05, 20.0)
"""The temperatures a manifest may carry, ends included (and the range every fit searches)."""


def check_temperatures(data: Any, task_names: Iterable[str], source: str = "manifest") -> dict[str, float]:
    """Validate a ``temperatures`` mapping: known task names, values in :data:`TEMPERATURE_RANGE`.

    Args:
        data: The mapping as read from JSON (``None`` counts as empty).
        task_names: The manifest's task names.
        source: Where the mapping comes from, for the message.

    Returns:
        ``{task: float(T)}``, in task order.

    Raises:
        ManifestError: Not a mapping, an unknown task, or a value that is not a number in
            :data:`TEMPERATURE_RANGE`.
    """
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ManifestError(
            f"{source}: 'temperatures' must map task names to numbers, found {type(data).__name__}; "
            "rewrite it or delete the field (every temperature is then 1.0)"
        )
    names = list(task_names)
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ManifestError(
            f"{source}: 'temperatures' names task(s) {unknown} that the manifest does not have "
            f"(its tasks: {names}); remove them"
        )
    out = {}
    for name in names:
        if name not in data:
            continue
        value = data[name]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        low, high = TEMPERATURE_RANGE
        if not ok or not math.isfinite(value) or not low <= value <= high:
            raise ManifestError(
                f"{source}: temperature of task {name!r} must be a number from {low} to {high}, found "
                f"{value!r} (beyond that range the softmax ties classes and changes labels); refit it "
                "with 'facesdk eval --calibrate' or delete the entry (1.0)"
            )
        out[name] = float(value)
    return out


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``logits / temperature`` in float64 (the input unchanged when ``temperature`` is 1)."""
    x = np.asarray(logits, dtype=np.float64)
    return x if temperature == 1.0 else x / float(temperature)
