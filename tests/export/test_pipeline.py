"""The export directory: hashes, integrity, atomicity, --force, the INT8 hook."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from facesdk.contract.export_manifest import EXPORT_MANIFEST, load_export_manifest
from facesdk.contract.manifest_io import sha256_file
from facesdk.errors import ConfigError, IntegrityError
from facesdk.export import pipeline
from facesdk.export.options import ExportOptions
from facesdk.export.pipeline import run_export


def test_manifest_lists_every_file_with_its_hash(exports: dict[str, Path], method: str) -> None:
    directory = exports[method]
    manifest = load_export_manifest(directory, verify=True)
    files = {e.file.path for e in manifest.models.values()}
    assert files == {"model.onnx", "model.fp16.onnx"}
    assert {p.name for p in directory.iterdir()} == files | {EXPORT_MANIFEST}
    for entry in manifest.models.values():
        assert entry.file.sha256 == sha256_file(directory / entry.file.path)
        assert entry.file.size == (directory / entry.file.path).stat().st_size
    assert manifest.opset == 18 and manifest.batch == (1, 8)
    assert manifest.input.name == "input" and [o.name for o in manifest.outputs] == [
        "age",
        "gender",
        "emotion",
    ]
    assert manifest.source["method"] == method
    assert manifest.source["checkpoint_sha256"] == sha256_file(
        Path(manifest.source["checkpoint"]) / "checkpoint.json"
    )
    assert {"torch", "timm", "peft", "onnx", "onnxruntime"} <= set(manifest.versions)


def test_corrupted_model_is_detected(exports: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "export"
    shutil.copytree(exports["lora"], copy)
    path = copy / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    load_export_manifest(copy, verify=False)  # size still matches
    with pytest.raises(IntegrityError, match="sha256"):
        load_export_manifest(copy, verify=True)


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_interrupted_export_leaves_nothing(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        assert Path(args[0]).is_file()  # model.onnx exists in the staging directory
        raise KeyboardInterrupt  # an interrupt right after model.onnx was written

    monkeypatch.setattr(pipeline, "check_onnx", boom)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_export(ExportOptions(ckpt=checkpoints["lora"], out=out, max_batch=2))
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_existing_output_refused_without_force(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--force"):
        run_export(ExportOptions(ckpt=checkpoints["lora"], out=out, max_batch=2))
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="did not write"):  # --force replaces only an export
        run_export(ExportOptions(ckpt=checkpoints["lora"], out=out, max_batch=2, force=True))
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    run_export(ExportOptions(ckpt=checkpoints["lora"], out=out, max_batch=2, force=True))  # empty: replaced
    (out / "stale.txt").write_text("left in the old export")
    manifest = run_export(ExportOptions(ckpt=checkpoints["lora"], out=out, max_batch=2, force=True))
    assert not (out / "stale.txt").exists()
    assert set(manifest.models) == {"onnx-fp32"}
    assert _leftovers(tmp_path) == []


def test_int8_hook_contract(
    checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agreed call: quantize_export(fp32_onnx, calib_dir, out_onnx, preprocess, tasks) -> dict."""
    calls: dict[str, Any] = {}

    def quantize_export(
        fp32_onnx: Path, calib_dir: Path, out_onnx: Path, preprocess: Any, tasks: Any, **kw: Any
    ) -> dict:
        calls.update(fp32=fp32_onnx, calib=calib_dir, preprocess=preprocess, tasks=tasks)
        shutil.copyfile(fp32_onnx, out_onnx)  # a stand-in "quantized" model
        return {"method": "fake", "agreement": {"age": 1.0}}

    fake = types.ModuleType("facesdk.calibration.quantize")
    fake.quantize_export = quantize_export  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "facesdk.calibration.quantize", fake)
    # The stand-in set below holds no crops: keep the export's optional OpenVINO agreement check
    # (run where OpenVINO is installed) from reading it, so the test means the same everywhere.
    monkeypatch.setattr(
        "facesdk.export.pipeline.record_openvino_agreement", lambda stage, base, models, *a: models
    )
    calib = tmp_path / "calib"
    calib.mkdir()
    out = tmp_path / "out"
    manifest = run_export(
        ExportOptions(
            ckpt=checkpoints["lora"],
            out=out,
            precisions="fp32,int8",
            calib=calib,
            onnx_only=True,
            max_batch=2,
        )
    )
    assert calls["calib"] == calib and calls["fp32"].name == "model.onnx"
    assert [t.name for t in calls["tasks"]] == ["age", "gender", "emotion"]
    entry = manifest.model("onnx", "int8")
    assert entry.extra["calibration"]["method"] == "fake"
    assert manifest.parity["onnx-int8"]["calibration_report"]["agreement"] == {"age": 1.0}
    load_export_manifest(out, verify=True)


@pytest.mark.slow
def test_int8_with_the_calibration_stage(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """The real quantize_export on 64 lfw crops (scikit-image) produces a Q/DQ model.int8.onnx."""
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the calibration images")
    pytest.importorskip("facesdk.calibration.collect", reason="the calibration stage is not installed")
    import cv2
    import numpy as np
    import onnx

    from facesdk.calibration.collect import Source, collect
    from facesdk.contract.checkpoint import load_checkpoint_manifest

    crops = tmp_path / "lfw"
    crops.mkdir()
    for i, face in enumerate(data.lfw_subset()[:64]):
        cv2.imwrite(str(crops / f"{i:03d}.png"), (face * 255 + 0.5).astype(np.uint8))
    preprocess = load_checkpoint_manifest(checkpoints["lora"]).preprocess
    collect(
        [Source(crops, cropped=True)], tmp_path / "calib", preprocess, count=64, shard_size=16, progress=False
    )
    out = tmp_path / "out"
    manifest = run_export(
        ExportOptions(
            ckpt=checkpoints["lora"],
            out=out,
            precisions="fp32,int8",
            calib=tmp_path / "calib",
            onnx_only=True,
            max_batch=4,
            int8_options={"accept_drop": True},  # random weights: agreement is recorded, not enforced
        )
    )
    entry = manifest.model("onnx", "int8")
    assert entry.extra["options"] == {"accept_drop": True}
    graph = onnx.load(str(out / entry.file.path)).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    assert set(manifest.parity["onnx-int8"]["tasks"]) == {"age", "gender", "emotion"}
    if importlib.util.find_spec("openvino") is not None:  # OpenVINO running the INT8 file, on the 64 crops
        record = entry.extra["openvino_agreement"]["f32"]
        assert record["samples"] == 64 and set(record["agreement_lower_bound"]) == {
            "age",
            "gender",
            "emotion",
        }
    load_export_manifest(out, verify=True)


def test_extra_task_becomes_an_output(tmp_path: Path) -> None:
    """Output names and order come from the checkpoint's tasks, so a fourth task just works."""
    import torch

    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.export.onnx_export import ort_session
    from facesdk.tasks import DEFAULT_TASKS, TaskSpec
    from facesdk.training import build_model, save_checkpoint

    tasks = (*DEFAULT_TASKS, TaskSpec("glasses", ("no", "yes")))
    backbone = BackboneSpec("vit_pe_core_tiny_patch16_384", "random", {"img_size": 64, "depth": 1})
    heads = {t.name: HeadSpec() for t in tasks}
    model, preprocess, spec = build_model(backbone, tasks, heads, MethodSpec("lora", {"rank": 2}))
    save_checkpoint(
        model,
        tmp_path / "ckpt",
        backbone=backbone,
        preprocess=preprocess,
        tasks=tasks,
        method=spec,
        heads=heads,
    )
    manifest = run_export(ExportOptions(ckpt=tmp_path / "ckpt", out=tmp_path / "out", max_batch=2))
    assert [o.name for o in manifest.outputs] == ["age", "gender", "emotion", "glasses"]
    session = ort_session(tmp_path / "out" / "model.onnx")
    assert [o.name for o in session.get_outputs()] == ["age", "gender", "emotion", "glasses"]
    assert session.run(["glasses"], {"input": torch.randn(2, 3, 64, 64).numpy()})[0].shape == (2, 2)
