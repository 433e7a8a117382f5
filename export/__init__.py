"""facesdk.export: merge adapters, export ONNX, build TensorRT engines (extra ``[export]``)."""

from __future__ import annotations
