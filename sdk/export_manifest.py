"""Kept for existing imports: the export manifest lives in :mod:`facesdk.contract.export_manifest`."""

from __future__ import annotations

from .contract.export_manifest import (
    EXPORT_MANIFEST,
    EXPORT_SCHEMA,
    EXPORT_SCHEMA_VERSION,
    MODEL_FORMATS,
    ONNX_METADATA_KEYS,
    PRECISIONS,
    ExportManifest,
    ModelEntry,
    TensorSpec,
    check_export_fields,
    load_export_manifest,
    manifest_from_onnx_metadata,
)

__all__ = [
    "EXPORT_MANIFEST",
    "EXPORT_SCHEMA",
    "EXPORT_SCHEMA_VERSION",
    "MODEL_FORMATS",
    "ONNX_METADATA_KEYS",
    "PRECISIONS",
    "check_export_fields",
    "ExportManifest",
    "load_export_manifest",
    "manifest_from_onnx_metadata",
    "ModelEntry",
    "TensorSpec",
]
