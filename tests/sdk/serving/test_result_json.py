"""The pipeline model's RESULT, read back as a client reads it, carries every face's head pose.

Runs the Python-backend pipeline model in this process with a stand-in for Triton's
``triton_python_backend_utils`` (no server needed); the same check against a real server is
``test_server.py::test_client_results_carry_the_head_pose``.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from facesdk import Analyzer
from facesdk.backends.base import create_backend
from facesdk.contract.export_manifest import load_export_manifest
from facesdk.faces.pose import head_pose
from facesdk.serving import BACKBONE_PYTHON, PIPELINE
from facesdk.serving.client import decode_result
from facesdk.serving.triton_models import PipelineModel


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class _Response:
    def __init__(self, output_tensors: list[_Tensor], error: object = None) -> None:
        self.output_tensors, self.error_value = output_tensors, error

    def has_error(self) -> bool:
        return self.error_value is not None


def _fake_pb_utils(export: Path) -> types.ModuleType:
    """Triton's Python-backend utilities, with BLS calls answered by ONNX Runtime on ``export``."""
    manifest = load_export_manifest(export)
    backbone = create_backend("onnxruntime", manifest, export / "model.onnx")

    class InferenceRequest:
        def __init__(self, model_name: str, requested_output_names: list[str], inputs: list[_Tensor]) -> None:
            assert model_name == BACKBONE_PYTHON
            self.outputs, self.inputs = requested_output_names, inputs

        def exec(self) -> _Response:
            logits = backbone.run(self.inputs[0].as_numpy())
            return _Response([_Tensor(name, logits[name]) for name in self.outputs])

    pb = types.ModuleType("triton_python_backend_utils")
    pb.Tensor = _Tensor  # type: ignore[attr-defined]
    pb.InferenceResponse = _Response  # type: ignore[attr-defined]
    pb.InferenceRequest = InferenceRequest  # type: ignore[attr-defined]
    pb.TritonError = str  # type: ignore[attr-defined]
    pb.get_input_tensor_by_name = lambda r, name: r.get(name)  # type: ignore[attr-defined]
    pb.get_output_tensor_by_name = lambda r, name: next(t for t in r.output_tensors if t.name == name)  # type: ignore[attr-defined]
    return pb


def test_pipeline_result_read_by_the_client_carries_the_pose(
    monkeypatch: pytest.MonkeyPatch, repository: Path, tiny_export: Path, yunet_path: Path, astronaut_bgr
) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils(tiny_export))
    model = PipelineModel()
    params = {"backbone_model": BACKBONE_PYTHON, "detector": yunet_path.name}
    model.initialize(
        {
            "model_repository": str(repository / PIPELINE),
            "model_version": "1",
            "model_config": json.dumps({"parameters": {k: {"string_value": v} for k, v in params.items()}}),
        }
    )
    (response,) = model.execute([{"FRAME": _Tensor("FRAME", astronaut_bgr)}])
    assert not response.has_error(), response.error_value
    (text,) = response.output_tensors[0].as_numpy()
    (served,) = json.loads(text)["faces"]  # what the server sends
    (face,) = decode_result(text).faces  # what the client returns
    with Analyzer(tiny_export, backend="onnxruntime", detector=yunet_path) as analyzer:
        (want,) = analyzer.analyze(astronaut_bgr).faces
    np.testing.assert_allclose(face.landmarks, want.landmarks, atol=1e-9)
    pose = head_pose(want.landmarks).to_json()
    assert served["pose"] == pytest.approx(pose, abs=1e-9)
    assert face.to_json()["pose"] == pytest.approx(pose, abs=1e-9)
    assert abs(pose["yaw"]) < 10 and abs(pose["roll"]) < 10  # the astronaut is near-frontal
