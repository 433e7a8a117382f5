"""The C++ demo against the Python Analyzer on the same image and export, and its refusals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.preprocess import CropPolicy
from facesdk.testing import make_tiny_export

# Debian's OpenCV 4.6 warps with fixed-point coordinates, OpenCV 5 (the wheel) does not: crops
# differ by up to 3 grey levels on some pixels, which moves probabilities by ~1e-4 on the tiny model.
PROB_TOLERANCE = 1e-3
BOX_TOLERANCE_PX = 1.0
# The C++ head pose is the Python algorithm in double precision (tests/cpp_demo/test_cpp_pose.py); from
# landmarks that differ by < 1e-5 px (OpenCV 4.6 against 5) the poses agree far within half a degree.
POSE_TOLERANCE_DEG = 0.5


def run_demo(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)


def demo_json(binary: Path, export: Path, source: Path, yunet: Path, *extra: str) -> list[dict]:
    proc = run_demo(
        binary, "--model", str(export), "--source", str(source), "--detector", str(yunet), "--json", *extra
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def assert_same_faces(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) >= 1
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g["box"], w["box"], atol=BOX_TOLERANCE_PX)
        np.testing.assert_allclose(g["landmarks"], w["landmarks"], atol=BOX_TOLERANCE_PX)
        assert g["score"] == pytest.approx(w["score"], abs=1e-4)
        assert list(g["attributes"]) == list(w["attributes"])
        assert g["pose"] == pytest.approx(w["pose"], abs=POSE_TOLERANCE_DEG)
        assert (g["age_years"] is None) == (w["age_years"] is None)
        if w["age_years"] is not None:  # expected age: the same bin midpoints, probabilities within tolerance
            assert g["age_years"] == pytest.approx(w["age_years"], abs=75 * PROB_TOLERANCE)
        for task, pred in w["attributes"].items():
            assert g["attributes"][task]["label"] == pred["label"]
            assert list(g["attributes"][task]["probs"]) == list(pred["probs"])
            np.testing.assert_allclose(
                list(g["attributes"][task]["probs"].values()),
                list(pred["probs"].values()),
                atol=PROB_TOLERANCE,
            )


@pytest.mark.parametrize("crop", ["align5", "box"])
def test_matches_python_analyzer(
    demo_binary: Path,
    yunet_path: Path,
    astronaut_png: Path,
    astronaut_bgr: np.ndarray,
    tmp_path: Path,
    crop: str,
) -> None:
    from facesdk import Analyzer

    export = tmp_path / "export"
    make_tiny_export(export, crop=CropPolicy(kind=crop, margin=0.3))
    frames = demo_json(demo_binary, export, astronaut_png, yunet_path, "--save", str(tmp_path / "out.png"))
    assert len(frames) == 1 and frames[0]["index"] == 0
    assert set(frames[0]["timings"]) == {"decode", "detect", "align", "infer", "post"}
    with Analyzer(export, backend="onnxruntime", detector=yunet_path) as analyzer:
        want = analyzer.analyze(astronaut_bgr).to_json()
    assert set(frames[0]) == set(want)
    assert_same_faces(frames[0]["faces"], want["faces"])
    assert cv2.imread(str(tmp_path / "out.png")).shape == astronaut_bgr.shape


def test_applies_the_exports_temperatures_like_python(
    demo_binary: Path, yunet_path: Path, astronaut_png: Path, astronaut_bgr: np.ndarray, tmp_path: Path
) -> None:
    from facesdk import Analyzer

    plain, calibrated = tmp_path / "plain", tmp_path / "calibrated"
    make_tiny_export(plain)
    make_tiny_export(calibrated)
    data = json.loads((calibrated / "export.json").read_text())
    data["temperatures"] = {"age": 3.0, "gender": 0.25}  # emotion left out: 1.0
    (calibrated / "export.json").write_text(json.dumps(data))
    got = demo_json(demo_binary, calibrated, astronaut_png, yunet_path)[0]["faces"]
    raw = demo_json(demo_binary, plain, astronaut_png, yunet_path)[0]["faces"]
    with Analyzer(calibrated, backend="onnxruntime", detector=yunet_path) as analyzer:
        want = analyzer.analyze(astronaut_bgr).to_json()["faces"]
    assert_same_faces(got, want)
    # The temperatures change what the demo prints (beyond the tolerance), except for emotion.
    for task, changed in (("age", True), ("gender", True), ("emotion", False)):
        a = np.array(list(got[0]["attributes"][task]["probs"].values()))
        b = np.array(list(raw[0]["attributes"][task]["probs"].values()))
        assert (np.abs(a - b).max() > 10 * PROB_TOLERANCE) == changed, task


def test_json_carries_the_head_pose_of_its_landmarks_like_python(
    demo_binary: Path, tiny_export: Path, yunet_path: Path, astronaut_png: Path, astronaut_bgr: np.ndarray
) -> None:
    from facesdk import Analyzer
    from facesdk.faces.pose import head_pose

    (face,) = demo_json(demo_binary, tiny_export, astronaut_png, yunet_path)[0]["faces"]
    assert list(face["pose"]) == ["yaw", "pitch", "roll"]
    same_landmarks = head_pose(face["landmarks"]).to_json()  # the demo prints its landmarks in full precision
    assert face["pose"] == pytest.approx(same_landmarks, abs=1e-6)
    with Analyzer(tiny_export, backend="onnxruntime", detector=yunet_path) as analyzer:
        (want,) = analyzer.analyze(astronaut_bgr).to_json()["faces"]
    assert face["pose"] == pytest.approx(want["pose"], abs=POSE_TOLERANCE_DEG)
    assert (
        abs(face["pose"]["yaw"]) < 10 and abs(face["pose"]["roll"]) < 10
    )  # near-frontal (tests/sdk/test_pose.py)


def test_video_gives_one_line_per_frame(
    demo_binary: Path, tiny_export: Path, yunet_path: Path, astronaut_bgr: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, astronaut_bgr.shape[1::-1])
    for i in range(3):
        writer.write(np.roll(astronaut_bgr, 2 * i, axis=1))
    writer.release()
    frames = demo_json(demo_binary, tiny_export, path, yunet_path)
    assert [f["index"] for f in frames] == [0, 1, 2]
    assert all(len(f["faces"]) == 1 for f in frames)


def _edited(tmp_path: Path, tiny_export: Path, **fields: object) -> Path:
    """A copy of the tiny export whose export.json has ``fields`` replaced."""
    import shutil

    export = tmp_path / "edited"
    shutil.copytree(tiny_export, export)
    data = json.loads((export / "export.json").read_text())
    (export / "export.json").write_text(json.dumps({**data, **fields}))
    return export


def _schema_v2(tmp_path: Path, tiny_export: Path) -> Path:
    export = tmp_path / "v2"
    export.mkdir()
    data = json.loads((tiny_export / "export.json").read_text())
    data["schema_version"] = 2
    (export / "export.json").write_text(json.dumps(data))
    return export


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_model", "export directory .* does not exist"),
        ("schema_v2", "schema version 2; this facesdk_demo reads version 1"),
        ("bad_temperature", "temperature of task 'age' must be a finite number > 0, found -1"),
        ("bad_source", "cannot (open|read)"),
        ("missing_device", "device 'NPU' is not present on this machine; available: CPU"),
        ("unbuilt_backend", "backend 'tflite' is not built into this facesdk_demo; built: .*openvino"),
    ],
)
def test_bad_input_exits_nonzero_with_message(
    demo_binary: Path, tiny_export: Path, yunet_path: Path, tmp_path: Path, case: str, message: str
) -> None:
    import re

    model, source, extra = str(tiny_export), str(tmp_path / "missing.png"), []
    (tmp_path / "garbage.png").write_bytes(b"not an image")
    if case == "missing_model":
        model = str(tmp_path / "nowhere")
    elif case == "schema_v2":
        model = str(_schema_v2(tmp_path, tiny_export))
    elif case == "bad_temperature":
        model = str(_edited(tmp_path, tiny_export, temperatures={"age": -1.0}))
    elif case == "bad_source":
        source = str(tmp_path / "garbage.png")
    elif case == "unbuilt_backend":
        extra = ["--backend", "tflite"]
    else:
        ov = pytest.importorskip("openvino")
        if any(d.startswith("NPU") for d in ov.Core().available_devices):
            pytest.skip("this machine has an NPU")
        source, extra = str(tmp_path / "garbage.png"), ["--device", "NPU"]
    proc = run_demo(demo_binary, "--model", model, "--source", source, "--detector", str(yunet_path), *extra)
    assert proc.returncode != 0
    assert re.search(message, proc.stderr), proc.stderr
