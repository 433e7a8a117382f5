"""Kept for existing imports: file hashes and ONNX digests live in :mod:`facesdk.contract.integrity`."""

from __future__ import annotations

from .contract.integrity import (
    DIGEST_PLACEHOLDER,
    ONNX_DIGEST_KEY,
    cached_sha256,
    check_onnx_digest,
    clear_cache,
    read_onnx_metadata,
    set_onnx_metadata,
    stamp_onnx_digest,
    verify_file,
)

__all__ = [
    "DIGEST_PLACEHOLDER",
    "ONNX_DIGEST_KEY",
    "cached_sha256",
    "check_onnx_digest",
    "clear_cache",
    "read_onnx_metadata",
    "set_onnx_metadata",
    "stamp_onnx_digest",
    "verify_file",
]
