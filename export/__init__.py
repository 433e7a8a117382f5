"""facesdk.export: merge adapters, export ONNX and build TensorRT engines (extra ``[export]``).

The steps are separate modules so each can be used alone:

- :mod:`.merge` - ``merge_adapters``, ``check_merge``
- :mod:`.onnx_export` - ``export_onnx``, ``check_onnx``, ``compare_onnx_torch`` (metadata: ``facesdk.contract.integrity.set_onnx_metadata``)
- :mod:`.fp16` - ``convert_to_fp16`` (fp32 I/O, LayerNorm/Softmax in fp32)
- :mod:`.flops` - ``torch_flops``, ``onnx_macs``, ``complexity_record``
- :mod:`.tensorrt_build` - ``EngineFromOnnx`` (TensorRT, lazily imported)
- :mod:`.pipeline` - ``run_export(ExportOptions)``: the whole ``facesdk export build``
"""

from __future__ import annotations

__all__ = ["ExportOptions", "run_export", "merge_adapters"]


def __getattr__(name: str):  # noqa: ANN202 - lazy re-exports keep 'import facesdk.export' light
    if name == "ExportOptions":
        from .options import ExportOptions

        return ExportOptions
    if name == "run_export":
        from .pipeline import run_export

        return run_export
    if name == "merge_adapters":
        from .merge import merge_adapters

        return merge_adapters
    raise AttributeError(f"module 'facesdk.export' has no attribute {name!r}")
