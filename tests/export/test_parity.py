"""Export parity records: the INT8 figure is the gate's, FP16 runs on named face crops."""

from __future__ import annotations

import numpy as np
import pytest

from facesdk.bench import wilson_lower_bound
from facesdk.export.parity import face_crops, gate_parity
from facesdk.preprocess import Preprocess


def test_gate_parity_carries_the_gates_counts_and_bounds() -> None:
    report = {"agreement": {"age": 0.75, "gender": 1.0}, "agree": {"age": 3, "gender": 4}, "held_out": 4,
              "max_abs_diff": {"age": 0.5, "gender": 0.1}, "relative_logit_error": {"age": 0.2, "gender": 0.01}}  # fmt: skip
    record = gate_parity(report)
    assert record["crops"] == 4 and "held-out calibration crops" in record["inputs"]
    age = record["tasks"]["age"]
    assert (age["agree"], age["crops"], age["max_abs_diff"]) == (3, 4, 0.5)
    assert age["wilson_lower_95"] == pytest.approx(wilson_lower_bound(3, 4))
    assert record["calibration_report"] == report


def test_face_crops_without_a_calibration_set_are_lfw_faces_at_the_models_size() -> None:
    pytest.importorskip("skimage")
    spec = Preprocess(input_size=(48, 40))
    crops, description = face_crops(spec, None)
    assert crops.shape == (100, 3, 48, 40) and crops.dtype == np.float32
    assert "lfw_subset" in description
    assert crops.std(axis=(1, 2, 3)).min() > 0.05  # real images, not a constant fill
