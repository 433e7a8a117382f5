"""FP32 vs INT8 on held-out crops: top-1 agreement, relative logit error, accuracy per task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from facesdk.errors import FaceSdkError

__all__ = ["AccuracyDropError", "compare_models", "run_session", "holdout_split", "min_agreement"]


class AccuracyDropError(FaceSdkError):
    """INT8 agreed with FP32 less often than the threshold on some task.

    Attributes:
        report: The full report (agreement, errors, the sensitivity ranking).
    """

    def __init__(self, message: str, report: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.report = dict(report)


def run_session(session: Any, x: np.ndarray, names: Sequence[str], batch: int = 32) -> dict[str, np.ndarray]:
    """Run an ONNX Runtime session over ``x`` in batches; return ``{output: N x C}``."""
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    input_name = session.get_inputs()[0].name
    for start in range(0, len(x), batch):
        outs = session.run(list(names), {input_name: np.ascontiguousarray(x[start : start + batch])})
        for name, value in zip(names, outs, strict=True):
            parts[name].append(np.asarray(value, dtype=np.float32))
    return {n: np.concatenate(v) for n, v in parts.items()}


def holdout_split(n: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split of ``range(n)`` into (calibration, held-out) indices, both sorted."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {fraction}")
    n_hold = max(1, round(n * fraction))
    if n - n_hold < 1:
        raise ValueError(f"a calibration set of {n} crops cannot be split; collect more crops")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def compare_models(
    fp32: Mapping[str, np.ndarray], int8: Mapping[str, np.ndarray], labels: np.ndarray, tasks: Sequence[str]
) -> dict[str, Any]:
    """Per task: top-1 agreement, relative logit error (Frobenius) and, where labelled, accuracy."""
    report: dict[str, Any] = {"agreement": {}, "relative_logit_error": {}, "accuracy": {}}
    for col, task in enumerate(tasks):
        a, b = fp32[task], int8[task]
        report["agreement"][task] = float(np.mean(a.argmax(1) == b.argmax(1)))
        report["relative_logit_error"][task] = float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-12))
        y = labels[:, col] if labels.ndim == 2 and labels.shape[1] > col else np.full(len(a), -1)
        known = y >= 0
        if known.any():
            report["accuracy"][task] = {
                "fp32": float(np.mean(a[known].argmax(1) == y[known])),
                "int8": float(np.mean(b[known].argmax(1) == y[known])),
                "labelled": int(known.sum()),
            }
    report["held_out"] = int(len(next(iter(fp32.values())))) if fp32 else 0
    return report


def min_agreement(report: Mapping[str, Any]) -> float:
    """The lowest per-task agreement of a :func:`compare_models` report."""
    return min(report["agreement"].values())
