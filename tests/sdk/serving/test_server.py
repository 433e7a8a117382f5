"""A real Triton server on loopback: parity with the Analyzer, dynamic batching, bad requests."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.serving import BACKBONE_PYTHON, Client, ServerError, batch_sizes

# The server's serving environment runs OpenCV 4.10 + numpy 1.26, this process OpenCV 5 + numpy 2:
# detections agree to 1e-4 px, but warpAffine crops differ by rounding, which the tiny model
# (global average pool + linear, weights std 2) turns into probability differences up to ~2e-4.
# Against an Analyzer running on the serving environment's own libraries the pipeline must agree
# at 1e-5, like the backbone on identical input tensors.
CROSS_LIBRARY_PROB_ATOL = 1e-3
PROB_ATOL = 1e-5


def _probs(result) -> np.ndarray:  # noqa: ANN001
    return np.array([p for f in result.faces for a in f.attributes.values() for p in a.probs.values()])


def test_pipeline_applies_the_exports_temperatures(
    server, tiny_export: Path, yunet_path: Path, astronaut_bgr
) -> None:  # noqa: ANN001
    """The served export carries temperatures (conftest): the pipeline gives softmax(logits / T)."""
    import json
    import shutil

    from facesdk import Analyzer
    from facesdk.faces.analysis import softmax

    plain = Path(str(tiny_export) + "_plain")
    shutil.copytree(tiny_export, plain, dirs_exist_ok=True)
    data = json.loads((plain / "export.json").read_text())
    temperatures = data.pop("temperatures")
    assert temperatures  # the serving conftest's export is calibrated
    (plain / "export.json").write_text(json.dumps(data))
    with Analyzer(plain, backend="onnxruntime", detector=yunet_path) as analyzer:
        raw = analyzer.analyze(astronaut_bgr).faces[0]
    with Client(server.http_url) as client:
        served = client.analyze(astronaut_bgr).faces[0]
    for task, prediction in raw.attributes.items():
        t = temperatures.get(task, 1.0)
        want = softmax(np.log(np.array(list(prediction.probs.values()))) / t)  # log p = logits + constant
        got = np.array(list(served.attributes[task].probs.values()))
        np.testing.assert_allclose(got, want, atol=CROSS_LIBRARY_PROB_ATOL)
        if t != 1.0:  # the temperature moves probabilities well beyond the tolerance
            assert (
                np.abs(want - np.array(list(prediction.probs.values()))).max() > 10 * CROSS_LIBRARY_PROB_ATOL
            )


def test_backbone_matches_in_process_backend_and_batches(server, tiny_export: Path) -> None:  # noqa: ANN001
    from facesdk.backends.base import create_backend
    from facesdk.contract.export_manifest import load_export_manifest
    from facesdk.faces.analysis import softmax

    manifest = load_export_manifest(tiny_export)
    backend = create_backend("onnxruntime", manifest, tiny_export / "model.onnx")
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(int(rng.integers(1, 4)), 3, 32, 32)).astype(np.float32) for _ in range(24)]

    def send(batch: np.ndarray) -> dict[str, np.ndarray]:
        with Client(server.http_url, model=BACKBONE_PYTHON) as client:
            result = client.raw_infer({"input": (batch, "FP32")})
            return {t.name: result.as_numpy(t.name) for t in manifest.tasks}

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, batches))
    for batch, answer in zip(batches, answers, strict=True):
        expected = backend.run(batch)
        for name, logits in expected.items():
            np.testing.assert_allclose(softmax(answer[name]), softmax(logits), atol=PROB_ATOL)
    with Client(server.http_url) as client:
        sizes = batch_sizes(client.statistics(BACKBONE_PYTHON), BACKBONE_PYTHON)
    assert max(sizes) > 3, f"the dynamic batcher formed no batch larger than one request: {sizes}"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_pipeline_matches_analyzer_under_concurrency(server, analyzer, astronaut_bgr, protocol: str) -> None:  # noqa: ANN001
    frames = [np.roll(astronaut_bgr, 3 * i, axis=1) for i in range(12)]
    url = server.http_url if protocol == "http" else server.grpc_url

    def send(frame: np.ndarray):  # noqa: ANN202
        with Client(url, protocol=protocol) as client:
            return client.analyze(frame)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(send, frames))
    for frame, got in zip(frames, results, strict=True):
        want = analyzer.analyze(frame)
        assert len(got.faces) == len(want.faces) == 1
        np.testing.assert_allclose(got.faces[0].box, want.faces[0].box, atol=1e-2)
        assert {k: v.label for k, v in got.faces[0].attributes.items()} == {
            k: v.label for k, v in want.faces[0].attributes.items()
        }
        np.testing.assert_allclose(_probs(got), _probs(want), atol=CROSS_LIBRARY_PROB_ATOL)
    encoded = cv2.imencode(".png", astronaut_bgr)[1].tobytes()
    with Client(url, protocol=protocol) as client:
        np.testing.assert_allclose(_probs(client.analyze_encoded(encoded)), _probs(results[0]), atol=1e-9)


def test_client_results_carry_the_head_pose(server, analyzer, astronaut_bgr) -> None:  # noqa: ANN001
    """The server sends each face's landmarks and pose; the client's FaceResult.to_json carries the pose."""
    from facesdk.faces.pose import head_pose

    want = analyzer.analyze(astronaut_bgr).faces[0]
    with Client(server.http_url) as client:
        got = client.analyze(astronaut_bgr).faces[0]
        sent = client.raw_infer({"FRAME": (np.ascontiguousarray(astronaut_bgr), "UINT8")})
    (served,) = json.loads(sent.as_numpy("RESULT").reshape(-1)[0])["faces"]
    np.testing.assert_allclose(got.landmarks, want.landmarks, atol=1e-2)
    pose = got.to_json()["pose"]
    assert pose == pytest.approx(head_pose(got.landmarks).to_json(), abs=1e-9)
    assert served["pose"] == pytest.approx(pose, abs=1e-6)
    # landmarks within 1e-4 px across the two environments' libraries (see the module's note)
    assert pose == pytest.approx(want.pose.to_json(), abs=0.01)


_ANALYZE_IN_SERVING_ENV = """
import sys
import numpy as np
from facesdk import Analyzer

frames = np.load(sys.argv[3])["frames"]
with Analyzer(sys.argv[1], backend="onnxruntime", detector=sys.argv[2]) as analyzer:
    results = [analyzer.analyze(frame) for frame in frames]
probs = [[p for f in r.faces for a in f.attributes.values() for p in a.probs.values()] for r in results]
np.save(sys.argv[4], np.array(probs, dtype=np.float64))
"""


def test_pipeline_equals_the_analyzer_on_the_same_libraries(  # noqa: ANN001
    server, serving_env, tiny_export: Path, yunet_path: Path, astronaut_bgr, tmp_path: Path
) -> None:
    """The pipeline model runs the Analyzer's own functions: on the serving environment's OpenCV
    and numpy, an in-process Analyzer gives the server's probabilities within 1e-5."""
    import subprocess

    frames = np.stack([np.roll(astronaut_bgr, 5 * i, axis=0) for i in range(6)])
    np.savez(tmp_path / "frames.npz", frames=frames)
    script = tmp_path / "analyze.py"
    script.write_text(_ANALYZE_IN_SERVING_ENV)
    done = subprocess.run(
        [str(serving_env.python), str(script), str(tiny_export), str(yunet_path),
         str(tmp_path / "frames.npz"), str(tmp_path / "probs.npy")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    want = np.load(tmp_path / "probs.npy")

    def send(frame: np.ndarray) -> np.ndarray:
        with Client(server.http_url) as client:
            return _probs(client.analyze(frame))

    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(send, frames))
    assert want.shape == (len(frames), 18)  # one face per frame, 9 + 2 + 7 probabilities
    np.testing.assert_allclose(np.stack(got), want, atol=PROB_ATOL)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"IMAGE": (np.array([b"not an image"], dtype=np.object_), "BYTES")}, "could not be decoded"),
        ({"IMAGE": (np.array([b""], dtype=np.object_), "BYTES")}, "empty"),
        ({"FRAME": (np.zeros((8, 8), np.uint8), "UINT8")}, "unexpected shape"),
        ({"FRAME": (np.zeros((8, 8, 3), np.float32), "FP32")}, "data-type"),
        ({"FRAME": (np.zeros((0, 8, 3), np.uint8), "UINT8")}, "uint8 H x W x 3"),
        ({}, "exactly one of IMAGE"),
    ],
)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
    server, astronaut_bgr, inputs, message
) -> None:  # noqa: ANN001
    with Client(server.http_url) as client:
        with pytest.raises(ServerError, match=message):
            client.raw_infer(inputs)
        assert len(client.analyze(astronaut_bgr).faces) == 1


def test_server_stops_cleanly(serving_env, repository: Path) -> None:  # noqa: ANN001
    from facesdk.serving import PIPELINE, TritonServer

    server = TritonServer(repository, [PIPELINE, BACKBONE_PYTHON], serving_env, startup_timeout=180)
    server.start()
    try:
        with Client(server.grpc_url, protocol="grpc") as client:
            assert client.ready()
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    assert server.process is None
