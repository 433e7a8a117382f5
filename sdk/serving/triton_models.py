"""The Python-backend models that ``facesdk serve export`` writes (their ``model.py`` imports these).

Runs inside Triton's Python backend stub, in the serving environment (numpy<2). The
backbone model concatenates the requests the dynamic batcher hands it into one batch for
facesdk's ONNX Runtime backend; the pipeline model runs the Analyzer's own functions
(:func:`facesdk.faces.analysis.analyze_faces`, :class:`facesdk.faces.FaceDetector`) and calls the
backbone model through BLS.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import create_backend, run_batched
from ..contract.export_manifest import (
    EXPORT_MANIFEST,
    EXPORT_SCHEMA_VERSION,
    ExportManifest,
    load_export_manifest,
)
from ..contract.manifest_io import read_manifest_json
from ..errors import BackendError, FaceSdkError, InvalidFrameError
from ..faces.analysis import analyze_faces
from ..faces.detector import FaceDetector
from ..frames import to_bgr_uint8
from ..results import FrameResult

__all__ = ["BackboneModel", "PipelineModel", "BlsBackend", "decode_image"]

logger = logging.getLogger(__name__)


def _pb_utils() -> Any:
    import triton_python_backend_utils as pb_utils  # only importable inside Triton

    return pb_utils


def _parameters(args: dict[str, str]) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def _version_dir(args: dict[str, str]) -> Path:
    return Path(args["model_repository"]) / args["model_version"]


class BackboneModel:
    """The backbone: ``input`` (N x 3 x H x W) -> one logits tensor per task, dynamic batching."""

    def initialize(self, args: dict[str, str]) -> None:
        self.pb = _pb_utils()
        directory = _version_dir(args)
        self.manifest = load_export_manifest(directory)
        entry = self.manifest.model("onnx", "fp32") if "onnx-fp32" in self.manifest.models else None
        entry = entry or next(e for e in self.manifest.models.values() if e.format == "onnx")
        threads = int(_parameters(args).get("intra_op_threads", "1"))
        self.backend = create_backend(
            "onnxruntime", self.manifest, directory / entry.file.path, intra_op_threads=threads
        )
        self.input_name = self.manifest.input.name
        self.batches: list[int] = []

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        arrays, errors = [], {}
        for i, request in enumerate(requests):
            tensor = pb.get_input_tensor_by_name(request, self.input_name)
            array = None if tensor is None else tensor.as_numpy()
            if array is None or array.ndim != 4 or array.dtype != np.float32 or array.shape[0] < 1:
                errors[i] = f"expected input {self.input_name!r} float32 N x 3 x H x W"
                continue
            arrays.append((i, array))
        outputs: dict[str, np.ndarray] = {}
        if arrays:
            try:
                outputs = run_batched(self.backend, np.concatenate([a for _, a in arrays]))
            except (FaceSdkError, ValueError) as exc:
                errors.update({i: str(exc) for i, _ in arrays})
                arrays = []
        responses: list[Any] = [None] * len(requests)
        offset = 0
        for i, array in arrays:
            n = array.shape[0]
            tensors = [
                pb.Tensor(name, np.ascontiguousarray(v[offset : offset + n])) for name, v in outputs.items()
            ]
            responses[i] = pb.InferenceResponse(output_tensors=tensors)
            offset += n
        for i, message in errors.items():
            responses[i] = pb.InferenceResponse(output_tensors=[], error=pb.TritonError(message))
        return responses

    def finalize(self) -> None:
        self.backend.close()


class BlsBackend:
    """A :class:`facesdk.backends.base.Backend` whose ``run`` calls a Triton model through BLS."""

    name = "triton-bls"

    def __init__(self, model_name: str, manifest: ExportManifest) -> None:
        self.pb = _pb_utils()
        self.model_name = model_name
        self.max_batch = manifest.max_batch
        self.input_name = manifest.input.name
        self.outputs = [o.name for o in manifest.outputs]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        pb = self.pb
        request = pb.InferenceRequest(
            model_name=self.model_name,
            requested_output_names=self.outputs,
            inputs=[pb.Tensor(self.input_name, np.ascontiguousarray(batch, dtype=np.float32))],
        )
        response = request.exec()
        if response.has_error():
            raise BackendError(f"backbone model {self.model_name!r} failed: {response.error().message()}")
        return {name: pb.get_output_tensor_by_name(response, name).as_numpy() for name in self.outputs}

    def close(self) -> None:
        pass


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG...) into uint8 BGR; raise InvalidFrameError if impossible."""
    import cv2

    if not data:
        raise InvalidFrameError("IMAGE is empty; send the bytes of an encoded image (JPEG, PNG...)")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidFrameError(f"IMAGE ({len(data)} bytes) could not be decoded as an image (JPEG, PNG...)")
    return image


class PipelineModel:
    """Image (``IMAGE`` encoded BYTES or ``FRAME`` uint8 H x W x 3 BGR) -> ``RESULT`` (FrameResult JSON)."""

    def initialize(self, args: dict[str, str]) -> None:
        self.pb = _pb_utils()
        directory = _version_dir(args)
        params = _parameters(args)
        data = read_manifest_json(directory / EXPORT_MANIFEST, "export", (EXPORT_SCHEMA_VERSION,))
        self.manifest = ExportManifest.from_json(data)
        self.detector = FaceDetector(directory / params["detector"])
        self.backend = BlsBackend(params["backbone_model"], self.manifest)

    def _frame(self, request: Any) -> np.ndarray:
        pb = self.pb
        image = pb.get_input_tensor_by_name(request, "IMAGE")
        frame = pb.get_input_tensor_by_name(request, "FRAME")
        if (image is None) == (frame is None):
            raise InvalidFrameError(
                "send exactly one of IMAGE (encoded bytes, shape [1]) or FRAME (uint8 H x W x 3)"
            )
        if image is not None:
            values = image.as_numpy().reshape(-1)
            if values.size != 1:
                raise InvalidFrameError(f"IMAGE must hold one encoded image, got {values.size}")
            item = values[0]
            return decode_image(item if isinstance(item, bytes) else bytes(item))
        array = frame.as_numpy()
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or 0 in array.shape:
            raise InvalidFrameError(f"FRAME must be uint8 H x W x 3 BGR, got {array.dtype} {array.shape}")
        return to_bgr_uint8(array)

    def _analyze(self, request: Any) -> FrameResult:
        frame = self._frame(request)
        start = time.perf_counter()
        detections = self.detector.detect(frame)
        timings = {"detect": (time.perf_counter() - start) * 1000.0}
        faces = analyze_faces(frame, detections, self.backend, self.manifest, timings)
        return FrameResult(index=0, timestamp=time.time(), faces=faces, timings=timings)

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        responses = []
        for request in requests:
            try:
                text = self._analyze(request).dumps()
            except FaceSdkError as exc:
                responses.append(pb.InferenceResponse(output_tensors=[], error=pb.TritonError(str(exc))))
                continue
            except Exception as exc:  # report, keep serving
                logger.exception("pipeline request failed")
                message = f"{type(exc).__name__}: {exc}"
                responses.append(pb.InferenceResponse(output_tensors=[], error=pb.TritonError(message)))
                continue
            out = np.array([text.encode("utf-8")], dtype=np.object_)
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor("RESULT", out)]))
        return responses

    def finalize(self) -> None:
        pass
