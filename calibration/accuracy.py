"""FP32 vs INT8 on held-out crops: top-1 agreement with its Wilson 95% lower bound, relative
logit error and accuracy per task.

The figures come from :func:`facesdk.bench.compare_arrays` (the one comparison every agreement
number in facesdk uses) and the models run through :mod:`facesdk.backends`. The gate decides on
the lower bound, not the point estimate: with ``n`` held-out crops all in agreement the bound is
``n / (n + 3.84)``, so a 0.98 threshold needs at least 189 held-out crops
(:func:`facesdk.bench.min_crops_for`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from facesdk.backends import run_batched
from facesdk.backends.onnxruntime import OnnxFileBackend
from facesdk.bench import compare_arrays, min_crops_for, wilson_lower_bound
from facesdk.errors import ConfigError, FaceSdkError

__all__ = [
    "AccuracyDropError",
    "check_reachable",
    "compare_models",
    "holdout_split",
    "min_agreement",
    "min_lower_bound",
    "model_outputs",
]


class AccuracyDropError(FaceSdkError):
    """INT8 agreed with FP32 less often than the threshold on some task.

    Attributes:
        report: The full report (agreement, errors, the sensitivity ranking).
    """

    def __init__(self, message: str, report: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.report = dict(report)


def model_outputs(
    path: str | os.PathLike[str], x: np.ndarray, names: Sequence[str], threads: int = 2, batch: int = 32
) -> dict[str, np.ndarray]:
    """Run the ONNX model at ``path`` over ``x`` (SDK ONNX Runtime session, CPU); ``{output: N x C}``."""
    with OnnxFileBackend(path, names, max_batch=batch, intra_op_threads=threads) as backend:
        out = run_batched(backend, np.ascontiguousarray(x, dtype=np.float32))
    return {n: np.asarray(out[n], dtype=np.float32) for n in names}


def holdout_split(n: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split of ``range(n)`` into (calibration, held-out) indices, both sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {fraction}")
    n_hold = max(1, round(n * fraction))
    if n - n_hold < 1:
        raise ValueError(f"a calibration set of {n} crops cannot be split; collect more crops")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def check_reachable(held_out: int, threshold: float, total: int, fraction: float) -> None:
    """Refuse a gate that no model could pass: ``held_out`` crops all in agreement still give a
    Wilson lower bound below ``threshold``.

    Raises:
        ConfigError: Names the held-out count needed and the set size that gives it.
    """
    if threshold <= 0.0:
        return
    if threshold >= 1.0:
        raise ConfigError(
            f"threshold is an agreement rate below 1 (a lower bound never reaches 1); got {threshold}"
        )
    needed = min_crops_for(threshold)
    if held_out < needed:
        raise ConfigError(
            f"the INT8 gate needs >= {needed} held-out crops to show agreement >= {threshold} at 95% "
            f"confidence (Wilson lower bound); {total} crops at holdout_fraction={fraction} hold out "
            f"{held_out} (all agreeing gives {wilson_lower_bound(held_out, held_out):.3f}). Collect at "
            f"least {int(np.ceil(needed / fraction))} crops, raise holdout_fraction, or lower the threshold"
        )


def compare_models(
    fp32: Mapping[str, np.ndarray], int8: Mapping[str, np.ndarray], labels: np.ndarray, tasks: Sequence[str]
) -> dict[str, Any]:
    """Per task: top-1 agreement (point and Wilson 95% lower bound, with counts), relative logit
    error (Frobenius) and, where labelled, accuracy."""
    comparison = compare_arrays(fp32, int8, tasks, inputs="held-out calibration crops", reference_name="fp32")
    report: dict[str, Any] = {
        "agreement": {t: a.rate for t, a in comparison.tasks.items()},
        "agreement_lower_bound": {t: a.lower_bound for t, a in comparison.tasks.items()},
        "agree": {t: a.agree for t, a in comparison.tasks.items()},
        "relative_logit_error": {t: a.relative_logit_error for t, a in comparison.tasks.items()},
        "max_abs_diff": {t: a.max_abs_diff for t, a in comparison.tasks.items()},
        "accuracy": {},
        "held_out": comparison.crops,
        "confidence": "Wilson score interval, 95%, lower end",
        "inputs": comparison.inputs,
    }
    for col, task in enumerate(tasks):
        a, b = fp32[task], int8[task]
        y = labels[:, col] if labels.ndim == 2 and labels.shape[1] > col else np.full(len(a), -1)
        known = y >= 0
        if known.any():
            report["accuracy"][task] = {
                "fp32": float(np.mean(a[known].argmax(1) == y[known])),
                "int8": float(np.mean(b[known].argmax(1) == y[known])),
                "labelled": int(known.sum()),
            }
    return report


def min_agreement(report: Mapping[str, Any]) -> float:
    """The lowest per-task agreement (point estimate) of a :func:`compare_models` report."""
    return min(report["agreement"].values())


def min_lower_bound(report: Mapping[str, Any]) -> float:
    """The lowest per-task Wilson 95% lower bound of a :func:`compare_models` report: what the gate decides on."""
    return min(report["agreement_lower_bound"].values())
