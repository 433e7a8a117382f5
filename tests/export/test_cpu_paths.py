"""OpenVINO BF16 agreement measured at export (optional manifest field ``extra.openvino_bf16``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from facesdk.backends.select import cpu_signature  # noqa: E402
from facesdk.export.options import ExportOptions  # noqa: E402
from facesdk.export.pipeline import VALIDATION_CROPS, run_export  # noqa: E402


def _bf16_machine() -> bool:
    cpu = cpu_signature()
    return cpu["runtimes"]["openvino"] is not None and bool({"avx512_bf16", "amx_bf16"} & set(cpu["flags"]))


@pytest.mark.skipif(not _bf16_machine(), reason="needs OpenVINO and a CPU with AVX-512 BF16 or AMX")
def test_bf16_agreement_is_recorded_from_validation_crops(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints["lora"], ckpt)
    save_file({"input": torch.randn(12, 3, 64, 64, generator=torch.Generator().manual_seed(0))},
              str(ckpt / VALIDATION_CROPS))  # fmt: skip
    manifest = run_export(ExportOptions(ckpt=ckpt, out=tmp_path / "out", max_batch=4))
    record = manifest.models["onnx-fp32"].extra["openvino_bf16"]
    assert record["samples"] == 12 and record["crops"] == "checkpoint validation crops"
    assert set(record["agreement"]) == {"age", "gender", "emotion"}
    assert all(0.0 <= v <= 1.0 for v in record["agreement"].values())
    assert record["passed"] == (min(record["agreement"].values()) >= 0.98)


def test_no_record_without_face_crops(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    manifest = run_export(ExportOptions(ckpt=checkpoints["lora"], out=tmp_path / "out", max_batch=4))
    assert "openvino_bf16" not in manifest.models["onnx-fp32"].extra
