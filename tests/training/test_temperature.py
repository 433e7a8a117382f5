"""Temperature scaling and calibration metrics (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from facesdk.errors import ConfigError
from facesdk.tasks import MISSING
from facesdk.training.temperature import (
    calibration_at,
    expected_calibration_error,
    fit_temperature,
    fit_temperatures,
    log_softmax,
    negative_log_likelihood,
    reliability_bins,
)


def test_ece_matches_a_hand_computed_case() -> None:
    # Confidences 0.95 (right), 0.95 (wrong), 0.62 (right), 0.55 (right); 15 bins of width 1/15:
    # 0.95 -> bin 14 (acc 0.5, conf 0.95), 0.62 -> bin 9 (0.6 < 0.62 <= 0.667), 0.55 -> bin 8.
    # ECE = 2/4 * |0.5 - 0.95| + 1/4 * |1 - 0.62| + 1/4 * |1 - 0.55| = 0.225 + 0.095 + 0.1125.
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.38, 0.62], [0.55, 0.45], [0.5, 0.5]])
    labels = np.array([0, 1, 1, 0, MISSING])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.4325, abs=1e-12)
    bins = reliability_bins(probs, labels)
    assert bins.counts.tolist() == [0] * 8 + [1, 1, 0, 0, 0, 0, 2]
    assert bins.accuracy[14] == 0.5 and bins.confidence[14] == pytest.approx(0.95)
    assert np.isnan(bins.accuracy[0])
    # A confidence on a bin's upper edge belongs to that bin: (k/B, (k+1)/B].
    edge = np.array([[0.5, 0.5], [1.0, 0.0]])
    assert reliability_bins(edge, np.array([0, 0]), bins=2).counts.tolist() == [1, 1]


def test_nll_matches_a_hand_computed_case() -> None:
    logits = np.array([[0.0, np.log(3.0)], [np.log(4.0), 0.0], [9.0, 9.0]])
    labels = np.array([1, 1, MISSING])
    # p = 3/4 and 1/5: NLL = -(log 0.75 + log 0.2) / 2; with T = 2 the logits halve.
    assert negative_log_likelihood(logits, labels) == pytest.approx(-(np.log(0.75) + np.log(0.2)) / 2)
    p1, p2 = np.sqrt(3) / (1 + np.sqrt(3)), 1 / (1 + 2.0)
    assert negative_log_likelihood(logits, labels, 2.0) == pytest.approx(-(np.log(p1) + np.log(p2)) / 2)
    assert np.isnan(negative_log_likelihood(logits, np.full(3, MISSING)))


def _overconfident(seed: int = 0, n: int = 4000, classes: int = 5, scale: float = 5.0):
    """Labels drawn from softmax(z): z is calibrated, ``scale * z`` over-confident, with errors."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, classes))
    p = np.exp(log_softmax(z))
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return scale * z, labels


def test_fit_on_an_overconfident_model_lowers_ece_and_nll_and_keeps_accuracy() -> None:
    logits, labels = _overconfident()
    accuracy = (logits.argmax(1) == labels).mean()
    assert 0.4 < accuracy < 0.9  # the model makes errors
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(5.0, rel=0.1)
    before, after = calibration_at(logits, labels, 1.0), calibration_at(logits, labels, t)
    assert before.ece > 0.15 and after.ece < 0.03
    assert after.nll < before.nll
    assert after.count == before.count == len(labels)
    assert (np.exp(log_softmax(logits, t)).argmax(1) == labels).mean() == accuracy
    # The fit is a minimum: nudging T either way raises the NLL.
    assert after.nll < negative_log_likelihood(logits, labels, t * 1.05)
    assert after.nll < negative_log_likelihood(logits, labels, t / 1.05)


def test_fit_sharpens_an_underconfident_model_and_ignores_missing_labels() -> None:
    logits, labels = _overconfident(seed=1, scale=0.5)
    labels[::3] = MISSING
    assert fit_temperature(logits, labels) == pytest.approx(0.5, rel=0.1)
    fitted = fit_temperatures({"a": logits, "b": logits}, {"a": labels, "b": np.full(len(labels), MISSING)})
    assert set(fitted) == {"a"}  # no labels, no temperature (1.0)
    with pytest.raises(ConfigError, match="without labelled rows"):
        fit_temperature(logits, np.full(len(labels), MISSING))


@pytest.mark.parametrize(
    ("logits", "labels"),
    [
        (np.array([[9.0, -9.0]]), np.array([0])),  # one confident right row: the NLL falls as T -> 0
        (np.array([[9.0, -9.0]]), np.array([1])),  # one confident wrong row: it falls as T -> inf
    ],
)
def test_a_fit_at_an_end_is_a_temperature_manifests_accept(logits: np.ndarray, labels: np.ndarray) -> None:
    from facesdk.contract.temperatures import TEMPERATURE_RANGE, check_temperatures

    fitted = fit_temperature(logits, labels)
    assert TEMPERATURE_RANGE[0] <= fitted <= TEMPERATURE_RANGE[1]
    assert fitted == pytest.approx(TEMPERATURE_RANGE[int(labels[0])])
    assert check_temperatures({"gender": fitted}, ["gender"]) == {"gender": fitted}
