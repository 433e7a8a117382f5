"""Post-processing applies each task's temperature: softmax(logits / T), labels unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facesdk.faces.analysis import postprocess, softmax
from facesdk.results import Detection, expected_age
from facesdk.tasks import DEFAULT_TASKS

TEMPERATURES = {"age": 2.5, "gender": 0.4}  # emotion left out: 1.0


def _with_temperatures(export: Path, out: Path, temperatures: dict[str, float]) -> Path:
    """A copy of ``export`` at ``out`` whose export.json carries ``temperatures``."""
    shutil.copytree(export, out)
    data = json.loads((out / "export.json").read_text())
    data["temperatures"] = temperatures
    (out / "export.json").write_text(json.dumps(data))
    return out


def _detections(n: int) -> list[Detection]:
    return [Detection(box=(0, 0, 10, 10), score=0.9, landmarks=((0, 0),) * 5) for _ in range(n)]


def test_postprocess_divides_logits_by_each_tasks_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = {t.name: rng.normal(scale=3.0, size=(4, t.num_classes)) for t in DEFAULT_TASKS}
    plain = postprocess(_detections(4), logits, DEFAULT_TASKS)
    scaled = postprocess(_detections(4), logits, DEFAULT_TASKS, TEMPERATURES)
    for task in DEFAULT_TASKS:
        want = softmax(logits[task.name] / TEMPERATURES.get(task.name, 1.0))
        got = np.array([list(f.attributes[task.name].probs.values()) for f in scaled])
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert [f.attributes[task.name].label for f in scaled] == [
            f.attributes[task.name].label for f in plain
        ]
    # T > 1 softens (age), T < 1 sharpens (gender), T = 1 leaves emotion as it was.
    for p, s in zip(plain, scaled, strict=True):
        assert s.attributes["age"].confidence < p.attributes["age"].confidence
        assert s.attributes["gender"].confidence > p.attributes["gender"].confidence
        assert s.attributes["emotion"].probs == p.attributes["emotion"].probs
        assert s.age_years == expected_age(s.attributes["age"]) != p.age_years


def test_analyzer_applies_the_exports_temperatures(
    tiny_export: Path, yunet_path: Path, astronaut_bgr: np.ndarray, tmp_path: Path
) -> None:
    from facesdk import Analyzer

    calibrated = _with_temperatures(tiny_export, tmp_path / "calibrated", TEMPERATURES)
    with Analyzer(tiny_export, backend="onnxruntime", detector=yunet_path) as analyzer:
        plain = analyzer.analyze(astronaut_bgr).faces
    with Analyzer(calibrated, backend="onnxruntime", detector=yunet_path) as analyzer:
        assert analyzer.manifest.temperatures == TEMPERATURES
        scaled = analyzer.analyze(astronaut_bgr).faces
    assert len(plain) == len(scaled) == 1
    for task in DEFAULT_TASKS:
        p = np.array(list(plain[0].attributes[task.name].probs.values()))
        want = softmax(np.log(p) / TEMPERATURES.get(task.name, 1.0))  # log p = logits + constant
        got = np.array(list(scaled[0].attributes[task.name].probs.values()))
        np.testing.assert_allclose(got, want, atol=1e-9)
        assert scaled[0].attributes[task.name].label == plain[0].attributes[task.name].label


# The documented midpoints (docs/sdk.md, "Age in years"); 70+ capped at 75.
DOCUMENTED_YEARS = [1.0, 6.0, 14.5, 24.5, 34.5, 44.5, 54.5, 64.5, 75.0]


def test_analyze_cli_prints_age_years_from_calibrated_probabilities(
    tiny_export: Path, yunet_path: Path, astronaut_bgr: np.ndarray, tmp_path: Path
) -> None:
    import cv2

    from facesdk.cli import main
    from facesdk.tasks import AGE

    calibrated = _with_temperatures(tiny_export, tmp_path / "calibrated", {"age": 4.0})
    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), astronaut_bgr)
    lines = {}
    for name, model in (("plain", tiny_export), ("calibrated", calibrated)):
        out = tmp_path / f"{name}.jsonl"
        argv = [
            "analyze",
            str(image),
            "--model",
            str(model),
            "--detector",
            str(yunet_path),
            "--json",
            str(out),
        ]
        assert main(argv) == 0
        lines[name] = json.loads(out.read_text().splitlines()[0])["faces"][0]
    for face in lines.values():
        probs = face["attributes"]["age"]["probs"]
        assert list(probs) == list(AGE.labels)
        want = sum(p * y for p, y in zip(probs.values(), DOCUMENTED_YEARS, strict=True)) / sum(probs.values())
        assert face["age_years"] == pytest.approx(want, abs=1e-9)
        assert 1.0 <= face["age_years"] <= 75.0
    plain = np.array(list(lines["plain"]["attributes"]["age"]["probs"].values()))
    got = np.array(list(lines["calibrated"]["attributes"]["age"]["probs"].values()))
    np.testing.assert_allclose(got, softmax(np.log(plain) / 4.0), atol=1e-9)
    assert lines["calibrated"]["age_years"] != pytest.approx(lines["plain"]["age_years"], abs=1e-3)
