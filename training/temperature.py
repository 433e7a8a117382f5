"""Temperature scaling: fit one softmax temperature per task, and measure calibration.

Guo et al., "On Calibration of Modern Neural Networks" (2017): dividing a task's logits by a
single ``T > 0`` before the softmax keeps every arg-max (accuracy is unchanged) and, fitted
to minimise the negative log-likelihood on held-out labels, makes the confidences match how
often the model is right. The training run fits ``T`` on its validation split and writes it
into ``checkpoint.json``; ``facesdk eval --calibrate`` refits it on any labelled manifest.
Post-processing applies it (:mod:`facesdk.contract.temperatures`). Everything here is numpy and scipy
except :func:`fit_on_dataset`, which runs a torch model.

Metrics:
    * **NLL**: mean ``-log p(true label)`` over labelled rows.
    * **ECE** (expected calibration error): rows binned by confidence (the top probability)
      into :data:`ECE_BINS` equal-width bins ``(k/B, (k+1)/B]``; the count-weighted mean of
      ``|accuracy(bin) - mean confidence(bin)|``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special

from facesdk.contract.temperatures import TEMPERATURE_RANGE
from facesdk.errors import ConfigError
from facesdk.tasks import MISSING

__all__ = [
    "ECE_BINS",
    "T_RANGE",
    "Calibration",
    "ReliabilityBins",
    "calibration_at",
    "expected_calibration_error",
    "fit_on_dataset",
    "fit_temperature",
    "fit_temperatures",
    "log_softmax",
    "negative_log_likelihood",
    "reliability_bins",
]

ECE_BINS = 15
"""Equal-width confidence bins of the ECE and the reliability diagrams."""

T_RANGE = TEMPERATURE_RANGE
"""The temperatures the fit searches: those a manifest may carry (:mod:`facesdk.contract.temperatures`)."""


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``log softmax(logits / temperature)`` in float64 (:func:`scipy.special.log_softmax`)."""
    return special.log_softmax(np.asarray(logits, dtype=np.float64) / float(temperature), axis=1)


def _labelled(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or labels.shape != (len(logits),):
        raise ConfigError(
            f"expected N x C logits and N labels, got logits {logits.shape} and labels {labels.shape}"
        )
    keep = labels != MISSING
    return logits[keep], labels[keep]


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean ``-log softmax(logits / T)[label]`` over rows whose label is not ``MISSING`` (NaN if none)."""
    logits, labels = _labelled(logits, labels)
    if not len(labels):
        return float("nan")
    return float(-log_softmax(logits, temperature)[np.arange(len(labels)), labels].mean())


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin counts, mean confidence and accuracy of a reliability diagram.

    Bin ``k`` holds confidences in ``(k/B, (k+1)/B]``; empty bins have NaN means.
    """

    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, len(self.counts) + 1)

    @property
    def ece(self) -> float:
        """Count-weighted mean gap ``|accuracy - confidence|`` over the non-empty bins."""
        total = self.counts.sum()
        if not total:
            return float("nan")
        full = self.counts > 0
        gaps = np.abs(self.accuracy[full] - self.confidence[full])
        return float((self.counts[full] * gaps).sum() / total)

    def to_json(self) -> dict[str, Any]:
        def clean(values: np.ndarray) -> list[float | None]:
            return [None if v != v else float(v) for v in values]

        return {
            "counts": self.counts.tolist(),
            "confidence": clean(self.confidence),
            "accuracy": clean(self.accuracy),
        }


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> ReliabilityBins:
    """Bin labelled rows by confidence (top probability); count, mean confidence, accuracy per bin."""
    probs, labels = _labelled(probs, labels)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels) if len(probs) else np.zeros(0, dtype=bool)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct.astype(np.float64), minlength=bins) / counts
    return ReliabilityBins(counts, mean_conf, accuracy)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of probabilities against labels (``MISSING`` rows ignored); see the module docstring."""
    return reliability_bins(probs, labels, bins).ece


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in :data:`T_RANGE` that minimises the NLL of ``softmax(logits / T)``.

    The NLL is convex in ``1 / T``, hence unimodal in ``log T``: scipy's bounded scalar
    minimiser (Brent's method) on ``log T`` finds the minimum; the two ends of the range are
    candidates too (a flat or monotone NLL ends there).

    Raises:
        ConfigError: No row has a label.
    """
    logits, labels = _labelled(logits, labels)
    if not len(labels):
        raise ConfigError("cannot fit a temperature without labelled rows; give a manifest with labels")
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits, math.exp(log_t))[rows, labels].mean())

    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    found = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    candidates = [(nll(x), x) for x in (float(found.x), lo, hi)]
    # exp(log(0.05)) is 0.05000000000000001: clip, so that an end point is a valid manifest value.
    return float(min(max(math.exp(min(candidates)[1]), T_RANGE[0]), T_RANGE[1]))


def fit_temperatures(
    logits: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], min_labels: int = 1
) -> dict[str, float]:
    """One temperature per task that has at least ``min_labels`` labelled rows (others are left out: 1.0)."""
    out = {}
    for task, values in logits.items():
        task_labels = np.asarray(labels.get(task, np.zeros(0)), dtype=np.int64)
        if int((task_labels != MISSING).sum()) >= min_labels:
            out[task] = fit_temperature(values, task_labels)
    return out


@dataclass(frozen=True)
class Calibration:
    """NLL and reliability bins of one task's logits at one temperature.

    Attributes:
        temperature: The ``T`` the logits were divided by.
        count: Labelled rows.
        nll: Mean negative log-likelihood.
        bins: Reliability bins (their :attr:`~ReliabilityBins.ece` is the ECE).
    """

    temperature: float
    count: int
    nll: float
    bins: ReliabilityBins

    @property
    def ece(self) -> float:
        return self.bins.ece

    def to_json(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "count": self.count,
            "ece": self.ece,
            "nll": self.nll,
            "bins": len(self.bins.counts),
            "reliability": self.bins.to_json(),
        }


def calibration_at(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bins: int = ECE_BINS
) -> Calibration:
    """NLL, ECE and reliability bins of ``softmax(logits / temperature)`` against ``labels``."""
    labels = np.asarray(labels, dtype=np.int64)
    return Calibration(
        temperature=float(temperature),
        count=int((labels != MISSING).sum()),
        nll=negative_log_likelihood(logits, labels, temperature),
        bins=reliability_bins(np.exp(log_softmax(logits, temperature)), labels, bins),
    )


def fit_on_dataset(
    model: Any, dataset: Any, tasks: Any, device: Any, batch_size: int = 128, num_workers: int = 0
) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit temperatures on a labelled torch dataset (the training run's validation split).

    Args:
        model: A :class:`MultiTaskModel` (``{task: logits}`` per batch).
        dataset: Yields ``(image tensor, label vector)`` with labels in ``tasks`` order.
        tasks: The model's :class:`TaskSpec` sequence.
        device: Torch device to run on.

    Returns:
        The temperatures (tasks without labels are left out, i.e. 1.0) and a summary
        ``{task: {"temperature", "count", "ece_before", "ece_after", "nll_before", "nll_after"}}``.
    """
    import torch
    from torch.utils.data import DataLoader

    logits: dict[str, list[np.ndarray]] = {t.name: [] for t in tasks}
    labels: list[np.ndarray] = []
    model.eval()
    with torch.inference_mode():
        for x, y in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
            out = model(x.to(device))
            for task in tasks:
                logits[task.name].append(out[task.name].float().cpu().numpy())
            labels.append(y.numpy())
    if not labels:
        return {}, {}
    stacked = np.concatenate(labels)
    by_task = {t.name: np.concatenate(logits[t.name]) for t in tasks}
    task_labels = {t.name: stacked[:, j] for j, t in enumerate(tasks)}
    temperatures = fit_temperatures(by_task, task_labels)
    summary = {}
    for name, t in temperatures.items():
        before = calibration_at(by_task[name], task_labels[name], 1.0)
        after = calibration_at(by_task[name], task_labels[name], t)
        summary[name] = {
            "temperature": t,
            "count": after.count,
            "ece_before": before.ece,
            "ece_after": after.ece,
            "nll_before": before.nll,
            "nll_after": after.nll,
        }
    return temperatures, summary
