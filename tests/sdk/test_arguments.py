"""The API raises FaceSdkError subclasses, naming what to pass, for bad arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesdk import Analyzer
from facesdk.errors import ConfigError
from facesdk.results import Detection

LANDMARKS = ((200.0, 100.0), (240.0, 100.0), (220.0, 125.0), (205.0, 150.0), (235.0, 150.0))


@pytest.mark.parametrize("model", [None, 3, np.zeros(3), ""])
def test_analyzer_model_must_be_a_path(model: object, yunet_path: Path) -> None:
    with pytest.raises(ConfigError, match="model must be the path"):
        Analyzer(model, detector=yunet_path)  # type: ignore[arg-type]


def test_unknown_backend_keyword(tiny_export: Path, yunet_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"does not take the option\(s\) \['intra_op_thread'\].*intra_op_threads"
    ):
        Analyzer(tiny_export, backend="onnxruntime", detector=yunet_path, intra_op_thread=2)


@pytest.mark.parametrize(
    ("detections", "message"),
    [
        (None, "must be a sequence of Detection"),
        (Detection((178.0, 63.0, 90.0, 113.0), 0.9, LANDMARKS), "must be a sequence of Detection"),
        ([(178, 63, 90, 113)], r"detections\[0\] is a tuple"),
        ([{"box": (178, 63, 90, 113)}], r"detections\[0\] is a dict"),
        ([Detection((float("nan"), 63.0, 90.0, 113.0), 0.9, LANDMARKS)], r"detections\[0\]\.box"),
        ([Detection((178.0, 63.0, -90.0, 113.0), 0.9, LANDMARKS)], "w and h > 0"),
        ([Detection((178.0, 63.0, 90.0), 0.9, LANDMARKS)], "four finite numbers"),  # type: ignore[arg-type]
        ([Detection((178.0, 63.0, 90.0, 113.0), "high", LANDMARKS)], r"\.score"),  # type: ignore[arg-type]
        ([Detection((178.0, 63.0, 90.0, 113.0), 0.9, ((1.0, "x"),) * 5)], r"\.landmarks"),  # type: ignore[arg-type]
    ],
)
def test_bad_detections(analyzer, astronaut_bgr: np.ndarray, detections: object, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=message):
        analyzer.analyze_detections(astronaut_bgr, detections)


def test_good_detections_still_work(analyzer, astronaut_bgr: np.ndarray) -> None:  # noqa: ANN001
    result = analyzer.analyze_detections(
        astronaut_bgr, [Detection((178.0, 63.0, 90.0, 113.0), 0.9, LANDMARKS)]
    )
    assert len(result.faces) == 1
