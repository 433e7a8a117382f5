from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from facesdk import Analyzer, Detection, FrameResult, TaskSpec
from facesdk.errors import (
    BackendError,
    ConfigError,
    DetectorNotFoundError,
    InvalidFrameError,
    ManifestError,
    MissingFileError,
)
from facesdk.faces import model_store
from facesdk.faces.analysis import postprocess, softmax
from facesdk.tasks import DEFAULT_TASKS
from facesdk.testing import make_tiny_export
from facesdk.tracking import iou


def test_astronaut_one_face_three_predictions(
    analyzer: Analyzer, astronaut_bgr: np.ndarray, astronaut_box: tuple
) -> None:
    result = analyzer.analyze(astronaut_bgr)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert iou(face.box, astronaut_box) >= 0.5
    for prediction in (face.age, face.gender, face.emotion):
        assert prediction is not None
        assert sum(prediction.probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert prediction.confidence == max(prediction.probs.values())
    assert len(face.age.probs) == 9 and len(face.gender.probs) == 2 and len(face.emotion.probs) == 7
    assert set(result.timings) == {"detect", "align", "infer", "post"}


def test_result_json_round_trip(analyzer: Analyzer, astronaut_bgr: np.ndarray) -> None:
    result = analyzer.analyze(astronaut_bgr, index=3, timestamp=12.5)
    assert FrameResult.from_json(json.loads(result.dumps())) == result


def test_lone_onnx_file_reads_its_metadata(
    tiny_export: Path, yunet_path: Path, astronaut_bgr: np.ndarray
) -> None:
    with Analyzer(tiny_export / "model.onnx", detector=yunet_path) as a:
        assert len(a.analyze(astronaut_bgr).faces) == 1


def test_every_manifest_task_becomes_an_attribute(
    tmp_path: Path, yunet_path: Path, astronaut_bgr: np.ndarray
) -> None:
    tasks = (*DEFAULT_TASKS, TaskSpec("glasses", ("no", "yes")))
    make_tiny_export(tmp_path, tasks=tasks)
    with Analyzer(tmp_path, backend="onnxruntime", detector=yunet_path) as a:
        face = a.analyze(astronaut_bgr).faces[0]
    assert list(face.attributes) == ["age", "gender", "emotion", "glasses"]
    assert sum(face.attributes["glasses"].probs.values()) == pytest.approx(1.0)


def test_hundred_faces_one_frame_split_at_max_batch(analyzer: Analyzer, astronaut_bgr: np.ndarray) -> None:
    calls: list[int] = []
    run = analyzer.backend.run

    def spy(batch: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(batch))
        return run(batch)

    analyzer.backend.run = spy  # type: ignore[method-assign]
    analyzer.backend.parallel_calls = 1  # one call's split (sharing among calls: test_parallel_calls.py)
    rng = np.random.default_rng(0)
    detections = []
    for _ in range(100):
        x, y = rng.uniform(-20, 480, size=2)
        marks = tuple((x + dx, y + dy) for dx, dy in ((10, 12), (30, 12), (20, 22), (12, 32), (28, 32)))
        detections.append(Detection(box=(x, y, 40.0, 48.0), score=0.9, landmarks=marks))
    result = analyzer.analyze_detections(astronaut_bgr, detections)
    assert len(result.faces) == 100
    assert calls == [8] * 12 + [4]
    assert [f.box for f in result.faces] == [d.box for d in detections]


@pytest.mark.parametrize(
    "convert",
    [
        lambda f: f[..., 1],  # grayscale H x W
        lambda f: f[..., 1:2],  # H x W x 1
        lambda f: np.dstack([f, np.full(f.shape[:2], 255, np.uint8)]),  # BGRA
        lambda f: f.astype(np.float32) / 255.0,  # float [0, 1]
        lambda f: f.astype(np.float64),  # float [0, 255]
        lambda f: f.astype(np.uint16) * 257,  # uint16
    ],
    ids=["gray2d", "gray3d", "bgra", "float01", "float255", "uint16"],
)
def test_converted_inputs_still_find_the_face(
    analyzer: Analyzer, astronaut_bgr: np.ndarray, convert: object
) -> None:
    assert len(analyzer.analyze(convert(astronaut_bgr)).faces) == 1  # type: ignore[operator]


@pytest.mark.parametrize(
    "frame", [None, np.zeros((0, 0, 3), np.uint8), np.zeros((8, 8, 3), np.int32), [1, 2]]
)
def test_bad_frames_are_refused(analyzer: Analyzer, frame: object) -> None:
    with pytest.raises(InvalidFrameError, match="expected"):
        analyzer.analyze(frame)


def test_frame_without_face_gives_empty_result(analyzer: Analyzer) -> None:
    result = analyzer.analyze(np.full((240, 320, 3), 127, np.uint8))
    assert result.faces == ()


def test_face_cut_by_border(analyzer: Analyzer, astronaut_bgr: np.ndarray) -> None:
    cut = astronaut_bgr[90:, 200:]  # the face hangs over the top-left corner
    marks = ((0.1, 11.8), (47.1, 12.6), (20.4, 34.5), (-1.4, 52.8), (39.7, 53.6))
    det = Detection(box=(-22.0, -27.0, 90.0, 113.0), score=0.9, landmarks=marks)
    result = analyzer.analyze_detections(cut, [det])
    assert len(result.faces) == 1
    analyzer.analyze(cut)  # the detector path works too, whatever it finds


def test_thread_safety(analyzer: Analyzer, astronaut_bgr: np.ndarray) -> None:
    expected = analyzer.analyze(astronaut_bgr).faces
    errors: list[BaseException] = []
    results: list[tuple] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(analyzer.analyze(astronaut_bgr).faces)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 12
    for faces in results:
        assert faces == expected


def test_stats_and_close(analyzer: Analyzer, astronaut_bgr: np.ndarray) -> None:
    list(analyzer.stream([astronaut_bgr, astronaut_bgr]))
    stats = analyzer.stats()
    # per frame: decode .. post (a file's frames wait for their estimates); per backbone call: classify
    assert set(stats) == {
        "decode",
        "detect",
        "align",
        "wait",
        "infer",
        "post",
        "classify",
        "classified_faces",
    }
    assert stats["detect"]["count"] == 2
    assert stats["classified_faces"]["count"] == 1  # one track, inferred once
    analyzer.reset_stats()
    assert analyzer.stats() == {}
    analyzer.analyze(astronaut_bgr)
    assert analyzer.stats()["detect"]["count"] == 1
    analyzer.close()
    analyzer.close()
    with pytest.raises(BackendError, match="closed"):
        analyzer.analyze(astronaut_bgr)


def test_auto_backend_logs_its_choice(
    tiny_export: Path,
    yunet_path: Path,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FACESDK_HOME", str(tmp_path))  # the choice is cached there
    with caplog.at_level(logging.INFO, logger="facesdk"), Analyzer(tiny_export, detector=yunet_path) as a:
        chosen = a.backend.name
    assert chosen in ("onnxruntime", "openvino")
    assert f"backend auto: chose {chosen}" in caplog.text
    assert "paths checked against FP32" in caplog.text  # and why


def test_model_and_detector_errors(
    tmp_path: Path, tiny_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(MissingFileError):
        Analyzer(tmp_path / "missing")
    with pytest.raises(ManifestError):
        Analyzer(tmp_path)
    with pytest.raises(ConfigError, match="backend"):
        Analyzer(tiny_export, backend="tflite")
    monkeypatch.delenv("FACESDK_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(model_store, "PACKAGED_DETECTOR", tmp_path / "lost.onnx")  # an install without it
    with pytest.raises(DetectorNotFoundError, match="facesdk models fetch"):
        Analyzer(tiny_export)


def test_postprocess_softmax() -> None:
    logits = {t.name: np.zeros((2, t.num_classes), np.float32) for t in DEFAULT_TASKS}
    dets = [Detection((0.0, 0.0, 1.0, 1.0), 1.0, ())] * 2
    faces = postprocess(dets, logits, DEFAULT_TASKS)
    assert faces[0].gender.probs == {"male": 0.5, "female": 0.5}
    np.testing.assert_allclose(softmax(np.array([[1000.0, 1000.0]])), [[0.5, 0.5]])
    with pytest.raises(BackendError, match="shape"):
        postprocess(dets, {**logits, "age": np.zeros((2, 3))}, DEFAULT_TASKS)


def test_analyze_batch_runs_all_frames_faces_together(analyzer: Analyzer, astronaut_bgr: np.ndarray) -> None:
    calls: list[int] = []
    run = analyzer.backend.run

    def spy(batch: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(batch))
        return run(batch)

    analyzer.backend.run = spy  # type: ignore[method-assign]
    analyzer.backend.parallel_calls = 1  # one call for all frames (sharing: test_parallel_calls.py)
    blank = np.zeros((120, 160, 3), np.uint8)
    results = analyzer.analyze_batch([astronaut_bgr, blank, astronaut_bgr])
    assert [len(r.faces) for r in results] == [1, 0, 1] and [r.index for r in results] == [0, 1, 2]
    assert calls == [2]
    assert results[0].faces == analyzer.analyze(astronaut_bgr).faces
    assert analyzer.analyze_batch([]) == []
