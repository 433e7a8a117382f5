"""Agreement between two models: per-task top-1 agreement with its crop count and a Wilson
95% lower bound, the largest absolute logit difference and the relative logit error.

Every agreement figure facesdk records (export parity, the INT8 gate, the TensorRT check,
benchmarks) comes from :func:`compare_arrays`, so they mean the same thing. A gate decides on
:attr:`Agreement.lower_bound`, not the point estimate: 64 of 64 crops in agreement only shows
agreement above about 0.94 at 95% confidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends.base import Backend, run_batched
from ..errors import ConfigError

__all__ = [
    "Z95",
    "Agreement",
    "Comparison",
    "wilson_lower_bound",
    "min_crops_for",
    "compare_arrays",
    "compare_outputs",
]

Z95 = 1.959963984540054
"""Two-sided 95% normal quantile."""


def wilson_lower_bound(successes: int, n: int, z: float = Z95) -> float:
    """Lower end of the Wilson score interval for ``successes`` out of ``n`` (0.0 when n is 0)."""
    if not 0 <= successes <= n:
        raise ConfigError(f"successes must be in [0, n]; got {successes} of {n}")
    if n == 0:
        return 0.0
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z2 / n))


def min_crops_for(threshold: float, z: float = Z95) -> int:
    """Smallest ``n`` whose Wilson lower bound with all ``n`` in agreement reaches ``threshold``.

    With every crop agreeing the bound is ``n / (n + z^2)``; at 0.98 that needs 189 crops.
    """
    if not 0.0 <= threshold < 1.0:
        raise ConfigError(f"an agreement threshold below 1 is reachable; got {threshold}")
    return max(1, math.ceil(threshold * z * z / (1.0 - threshold) - 1e-9))


@dataclass(frozen=True, slots=True)
class Agreement:
    """One task's comparison.

    Attributes:
        agree: Rows whose arg-max class is the same in both.
        crops: Rows compared.
        max_abs_diff: Largest absolute logit difference.
        relative_logit_error: ``||b - a|| / ||a||`` (Frobenius).
    """

    agree: int
    crops: int
    max_abs_diff: float
    relative_logit_error: float

    @property
    def rate(self) -> float:
        """Point estimate ``agree / crops``."""
        return self.agree / self.crops if self.crops else 0.0

    @property
    def lower_bound(self) -> float:
        """Wilson 95% lower bound of the agreement rate."""
        return wilson_lower_bound(self.agree, self.crops)

    def to_json(self) -> dict[str, Any]:
        return {
            "top1_agreement": self.rate,
            "agree": self.agree,
            "crops": self.crops,
            "wilson_lower_95": self.lower_bound,
            "max_abs_diff": self.max_abs_diff,
            "relative_logit_error": self.relative_logit_error,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """Per-task :class:`Agreement` of a candidate with a reference on named inputs.

    Attributes:
        tasks: Task name -> agreement.
        inputs: What the rows were (``"held-out calibration crops"``, ``"lfw_subset faces"``...).
        reference: What the candidate was compared with.
    """

    tasks: Mapping[str, Agreement]
    inputs: str = ""
    reference: str = ""

    @property
    def crops(self) -> int:
        return min((a.crops for a in self.tasks.values()), default=0)

    @property
    def min_agreement(self) -> float:
        return min((a.rate for a in self.tasks.values()), default=0.0)

    @property
    def min_lower_bound(self) -> float:
        return min((a.lower_bound for a in self.tasks.values()), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "reference": self.reference,
            "crops": self.crops,
            "confidence": "Wilson score interval, 95%, lower end",
            "min_top1_agreement": self.min_agreement,
            "min_wilson_lower_95": self.min_lower_bound,
            "tasks": {name: a.to_json() for name, a in self.tasks.items()},
        }


def compare_arrays(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    tasks: Sequence[str] | None = None,
    inputs: str = "",
    reference_name: str = "",
) -> Comparison:
    """Compare two ``{task: N x classes}`` outputs task by task.

    Raises:
        ConfigError: A task is missing from either side or the shapes differ.
    """
    names = list(tasks) if tasks is not None else list(reference)
    result = {}
    for name in names:
        if name not in reference or name not in candidate:
            raise ConfigError(
                f"task {name!r} missing: reference has {sorted(reference)}, candidate {sorted(candidate)}"
            )
        a = np.asarray(reference[name], dtype=np.float64)
        b = np.asarray(candidate[name], dtype=np.float64)
        if a.shape != b.shape or a.ndim != 2:
            raise ConfigError(
                f"task {name!r}: reference is {a.shape}, candidate {b.shape}; expected equal N x C"
            )
        result[name] = Agreement(
            agree=int(np.sum(a.argmax(1) == b.argmax(1))),
            crops=int(len(a)),
            max_abs_diff=float(np.abs(a - b).max()) if a.size else 0.0,
            relative_logit_error=float(np.linalg.norm(b - a) / max(float(np.linalg.norm(a)), 1e-12)),
        )
    return Comparison(result, inputs=inputs, reference=reference_name)


def compare_outputs(
    reference: Backend,
    candidate: Backend,
    inputs: np.ndarray,
    tasks: Sequence[str] | None = None,
    description: str = "",
) -> Comparison:
    """Run ``inputs`` (N x 3 x H x W) through both backends and compare their outputs.

    Args:
        reference: The backend taken as truth (e.g. ONNX Runtime FP32).
        candidate: The backend checked (FP16, INT8, an engine).
        inputs: Preprocessed crops; split at each backend's ``max_batch``.
        tasks: Tasks to compare (default: every output of the reference).
        description: What the inputs are, recorded in the comparison.
    """
    ref = run_batched(reference, inputs)
    got = run_batched(candidate, inputs)
    name = reference.describe() if hasattr(reference, "describe") else reference.name
    return compare_arrays(ref, got, tasks, inputs=description, reference_name=str(name))
