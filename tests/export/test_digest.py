"""Every ONNX file an export writes carries its own digest; a lone copy is verified against it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from facesdk.contract.export_manifest import load_export_manifest
from facesdk.contract.integrity import ONNX_DIGEST_KEY, check_onnx_digest, read_onnx_metadata
from facesdk.errors import IntegrityError
from facesdk.model_loader import resolve_model


def test_every_exported_onnx_carries_a_verified_digest(exports: dict[str, Path], tmp_path: Path) -> None:
    manifest = load_export_manifest(exports["lora"])
    onnx_files = [e.file.path for e in manifest.models.values() if e.format == "onnx"]
    assert sorted(onnx_files) == ["model.fp16.onnx", "model.onnx"]
    digests = set()
    for name in onnx_files:
        lone = tmp_path / name
        shutil.copyfile(exports["lora"] / name, lone)
        digest = check_onnx_digest(lone)
        assert digest is not None and read_onnx_metadata(lone)[ONNX_DIGEST_KEY] == digest
        digests.add(digest)
        assert resolve_model(lone, backend="onnxruntime").manifest.tasks == manifest.tasks
        data = bytearray(lone.read_bytes())
        data[len(data) // 2] ^= 0x01  # one weight bit
        damaged = tmp_path / f"damaged-{name}"
        damaged.write_bytes(bytes(data))
        with pytest.raises(IntegrityError, match="re-export"):
            resolve_model(damaged, backend="onnxruntime")
    assert len(digests) == 2  # fp16 got its own digest, not a copy of the fp32 one
