"""A Triton client that returns the Analyzer's types: ``Client(url).analyze(frame) -> FrameResult``."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ..errors import BackendError, InvalidFrameError, require
from ..frames import to_bgr_uint8
from ..results import FrameResult
from .repository import PIPELINE, PIPELINE_OUTPUT

__all__ = ["Client", "ServerError", "decode_result"]

_T = TypeVar("_T")


class ServerError(BackendError):
    """The server answered a request with an error (the message is the server's), or could not be
    reached: the connection was refused, timed out or was lost."""


def decode_result(value: bytes | str) -> FrameResult:
    """The :class:`FrameResult` in the pipeline model's ``RESULT`` (one JSON text, as bytes or str).

    The result is rebuilt from its JSON with every face's landmarks, so what a client returns
    carries what the Analyzer's results carry, the head pose in :meth:`FaceResult.to_json` included.
    """
    return FrameResult.from_json(json.loads(value))


class Client:
    """Send frames to the ``facesdk_pipeline`` model of a Triton server.

    Args:
        url: ``host:port`` of the server's HTTP (default 8000) or gRPC (default 8001) endpoint.
        protocol: ``"http"`` or ``"grpc"``.
        model: The pipeline model's name.
        timeout: Per-request timeout in seconds.

    A Client may be shared by threads with ``protocol="grpc"``; with HTTP, give each thread its own.
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8000",
        protocol: str = "http",
        model: str = PIPELINE,
        timeout: float = 60.0,
    ):
        if protocol not in ("http", "grpc"):
            raise BackendError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        self.url, self.protocol, self.model, self.timeout = url, protocol, model, timeout
        self._mod = require(f"tritonclient.{protocol}", "serving", "talking to a Triton server")
        self._utils = require("tritonclient.utils", "serving", "talking to a Triton server")
        if protocol == "http":
            self._client = self._mod.InferenceServerClient(
                url, network_timeout=timeout, connection_timeout=timeout
            )
        else:
            self._client = self._mod.InferenceServerClient(url)

    def ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except Exception:  # noqa: BLE001 - any transport failure means "not ready"
            return False

    def _infer(self, name: str, array: np.ndarray, datatype: str) -> FrameResult:
        inp = self._mod.InferInput(name, list(array.shape), datatype)
        inp.set_data_from_numpy(array)
        out = self._mod.InferRequestedOutput(PIPELINE_OUTPUT)
        kwargs: dict[str, Any] = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        result = self._request(lambda: self._client.infer(self.model, [inp], outputs=[out], **kwargs))
        return decode_result(result.as_numpy(PIPELINE_OUTPUT).reshape(-1)[0])

    def analyze(self, frame: Any, index: int = 0, timestamp: float | None = None) -> FrameResult:
        """Analyse one frame (uint8 BGR H x W x 3, converted like the Analyzer does) on the server."""
        image = to_bgr_uint8(frame)
        result = self._infer("FRAME", np.ascontiguousarray(image), "UINT8")
        return self._restamp(result, index, timestamp)

    def analyze_encoded(self, data: bytes, index: int = 0, timestamp: float | None = None) -> FrameResult:
        """Analyse an encoded image (JPEG, PNG... bytes); the server decodes it."""
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidFrameError(f"expected encoded image bytes, got {type(data).__name__}")
        result = self._infer("IMAGE", np.array([bytes(data)], dtype=np.object_), "BYTES")
        return self._restamp(result, index, timestamp)

    @staticmethod
    def _restamp(result: FrameResult, index: int, timestamp: float | None) -> FrameResult:
        ts = result.timestamp if timestamp is None else timestamp
        return FrameResult(index, ts, result.faces, result.timings, result.source)

    def raw_infer(self, inputs: dict[str, tuple[np.ndarray, str]]) -> Any:
        """Send arbitrary inputs ``{name: (array, datatype)}`` (tests, debugging); raise ServerError on error."""
        infer_inputs = []
        for name, (array, datatype) in inputs.items():
            inp = self._mod.InferInput(name, list(array.shape), datatype)
            inp.set_data_from_numpy(array)
            infer_inputs.append(inp)
        return self._request(lambda: self._client.infer(self.model, infer_inputs))

    def _request(self, call: Callable[[], _T]) -> _T:
        """Run one request; the server's errors and transport failures become :class:`ServerError`."""
        try:
            return call()
        except self._utils.InferenceServerException as exc:
            raise ServerError(f"{self.model}: {exc.message()}") from exc
        except (OSError, http.client.HTTPException) as exc:  # refused, timed out, connection lost
            raise ServerError(
                f"no answer from the Triton server at {self.url} ({self.protocol}): "
                f"{type(exc).__name__}: {exc}. Start one with 'facesdk serve run', or check the address"
            ) from exc

    def statistics(self, model: str | None = None) -> dict[str, Any]:
        """The server's inference statistics of ``model`` (default: every model) as a dict."""
        if self.protocol == "http":
            return self._request(lambda: self._client.get_inference_statistics(model or ""))
        return self._request(lambda: self._client.get_inference_statistics(model or "", as_json=True))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batch_sizes(stats: dict[str, Any], model: str) -> dict[int, int]:
    """``{batch size: executions}`` of ``model`` from :meth:`Client.statistics`."""
    for entry in stats.get("model_stats", []):
        if entry.get("name") == model:
            return {
                int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in entry.get("batch_stats", [])
            }
    return {}
