"""The export pipeline: checkpoint -> merged model -> ONNX (fp32/fp16/int8) -> engines -> export dir.

Everything is written into a hidden staging directory beside ``out`` and renamed into place
at the end, so a failed or interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from facesdk.contract.checkpoint import CHECKPOINT_MANIFEST, CheckpointManifest, load_checkpoint_manifest
from facesdk.contract.export_manifest import ExportManifest, ModelEntry, TensorSpec
from facesdk.contract.integrity import set_onnx_metadata, stamp_onnx_digest
from facesdk.contract.manifest_io import FileEntry, sha256_file
from facesdk.errors import ConfigError, FaceSdkError, ManifestError
from facesdk.outputs import StagedDir

from .calib_source import CalibrationUse, calibration_set
from .cpu_paths import record_openvino_agreement
from .errors import ExportError
from .flops import complexity_record
from .fp16 import convert_to_fp16
from .merge import check_merge, merge_adapters
from .onnx_export import INPUT_NAME, check_onnx, compare_onnx_torch, export_onnx
from .options import ExportOptions, ExportPlan, load_quantizer, preflight
from .parity import (
    VALIDATION_CROPS,
    face_crops,
    gate_parity,
    load_validation_crops,
    onnx_agreement,
)
from .rewrite import resolve_rope_layout, rewrite_for_export
from .tensorrt_build import EngineFromOnnx, check_engine_io, cuda_device_info, default_timing_cache

__all__ = ["run_export", "load_for_export", "load_validation_crops", "VALIDATION_CROPS", "MODEL_FILES"]

log = logging.getLogger(__name__)

MODEL_FILES = {
    ("onnx", "fp32"): "model.onnx",
    ("onnx", "fp16"): "model.fp16.onnx",
    ("onnx", "int8"): "model.int8.onnx",
    ("engine", "fp16"): "model.fp16.engine",
    ("engine", "int8"): "model.int8.engine",
}


def load_for_export(ckpt: Path) -> tuple[torch.nn.Module, CheckpointManifest]:
    """Load a checkpoint (verified) and refuse methods that cannot be merged."""
    from facesdk.training import load_checkpoint_with_manifest
    from facesdk.training.methods import get_method

    try:
        model, manifest = load_checkpoint_with_manifest(ckpt, verify=True)
    except FaceSdkError:
        raise
    except Exception as exc:  # safetensors/torch errors on a damaged weights file
        raise ManifestError(
            f"checkpoint {ckpt} could not be loaded ({type(exc).__name__}: {exc}); it is corrupt or "
            "incomplete: re-save it from training"
        ) from exc
    if not get_method(manifest.method.name).mergeable:
        raise ConfigError(f"checkpoint method {manifest.method.name!r} cannot be merged into a plain model")
    return model, manifest


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import peft
    import timm

    import facesdk

    return {
        "facesdk": facesdk.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "peft": peft.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _base_manifest(
    options: ExportOptions, ckpt: CheckpointManifest, complexity: Mapping[str, Any]
) -> ExportManifest:
    h, w = ckpt.preprocess.input_size
    return ExportManifest(
        tasks=ckpt.tasks,
        preprocess=ckpt.preprocess,
        input=TensorSpec(INPUT_NAME, ("batch", 3, h, w)),
        outputs=tuple(TensorSpec(t.name, ("batch", t.num_classes)) for t in ckpt.tasks),
        batch=(1, options.max_batch),
        opset=options.opset,
        complexity=dict(complexity),
        source={
            "checkpoint": str(options.ckpt.resolve()),
            "checkpoint_sha256": sha256_file(options.ckpt / CHECKPOINT_MANIFEST),
            "backbone": ckpt.backbone.name,
            "method": ckpt.method.name,
            "exporter": options.exporter,
        },
        versions=_versions(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        temperatures=ckpt.temperatures,  # applied in post-processing; the graph keeps raw logits
    )


def _onnx_stage(options: ExportOptions, stage: Path, ckpt: Path) -> tuple[ExportManifest, dict[str, Any]]:
    """Merge, check the merge, export and check model.onnx; return the base manifest and parity."""
    model, manifest = load_for_export(ckpt)
    size = tuple(manifest.preprocess.input_size)
    names = [t.name for t in manifest.tasks]
    merged = merge_adapters(model)
    merge = check_merge(model, merged, size, validation=load_validation_crops(ckpt, manifest))
    layout = resolve_rope_layout(options.rope_layout, options.engines)
    graph, rewrite = rewrite_for_export(merged, layout, size)
    onnx_path = export_onnx(
        graph,
        stage / MODEL_FILES["onnx", "fp32"],
        input_size=size,
        output_names=names,
        opset=options.opset,
        exporter=options.exporter,
        max_batch=options.max_batch,
    )
    check_onnx(onnx_path, names, options.opset)
    onnx_parity = compare_onnx_torch(
        merged, onnx_path, input_size=size, output_names=names, batches=options.batches
    )
    complexity = complexity_record(merged, model, size, onnx_path)
    base = _base_manifest(options, manifest, complexity)
    set_onnx_metadata(onnx_path, base.onnx_metadata())
    parity = {"merge": merge.to_json(), "rewrite": rewrite.to_json(), "onnx_vs_torch": onnx_parity}
    return base, parity


def _entry(stage: Path, fmt: str, precision: str, **kwargs: Any) -> tuple[str, ModelEntry]:
    name = MODEL_FILES[fmt, precision]
    if fmt == "onnx":  # after the file's last write: a lone .onnx is verified against this digest
        stamp_onnx_digest(stage / name)
    return ExportManifest.model_key(fmt, precision), ModelEntry(
        FileEntry.of(stage, name), fmt, precision, **kwargs
    )


def _lowp_onnx(
    options: ExportOptions, stage: Path, base: ExportManifest, precision: str, calib: CalibrationUse | None
) -> tuple[dict, dict]:
    """Write model.fp16.onnx or model.int8.onnx; return (models, parity) additions."""
    fp32 = stage / MODEL_FILES["onnx", "fp32"]
    out = stage / MODEL_FILES["onnx", precision]
    extra: dict[str, Any] = {}
    if precision == "fp16":
        convert_to_fp16(fp32, out)
        crops, description = face_crops(
            base.preprocess, calib.directory if calib is not None else options.calib
        )
        parity = onnx_agreement(fp32, out, [o.name for o in base.outputs], crops, description)
    else:
        quantize = load_quantizer()
        assert calib is not None  # run_export provides it for int8
        try:
            report = quantize(
                fp32, calib.directory, out, base.preprocess, base.tasks, **dict(options.int8_options)
            )
        except FaceSdkError:
            raise
        except Exception as exc:  # a bug or an ORT quantizer error inside the calibration stage
            raise ExportError(
                f"INT8 quantization (facesdk.calibration.quantize_export) failed: {type(exc).__name__}: {exc}"
            ) from exc
        extra = {
            "calibration": dict(report or {}),
            "options": dict(options.int8_options),
            "calibration_set": calib.record,
        }
        parity = gate_parity(report or {})
        set_onnx_metadata(out, base.onnx_metadata())
    key, entry = _entry(stage, "onnx", precision, extra=extra)
    return {key: entry}, {f"onnx-{precision}": parity}


def _engine(
    options: ExportOptions, stage: Path, base: ExportManifest, precision: str, calib: CalibrationUse | None
) -> tuple[dict, dict]:
    """Build, check and compare one TensorRT engine; return (models, parity) additions."""
    import tensorrt as trt

    from .tensorrt_check import compare_engine_with_onnx

    h, w = base.preprocess.input_size
    hi = options.max_batch
    device = cuda_device_info()
    loader = EngineFromOnnx(
        onnx_path=stage / MODEL_FILES["onnx", precision],
        precision=precision,
        input_name=INPUT_NAME,
        input_chw=(3, h, w),
        batch=(1, max(1, min(8, hi)), hi),
        workspace_bytes=int(options.workspace_gb * (1 << 30)),
        timing_cache=options.timing_cache
        or default_timing_cache(trt.__version__, device["compute_capability"]),
        typing=options.trt_typing,
    )
    plan = loader()
    check_engine_io(plan, INPUT_NAME, (3, h, w), {t.name: t.num_classes for t in base.tasks})
    path = stage / MODEL_FILES["engine", precision]
    path.write_bytes(plan)
    record = {"version": trt.__version__, **device, "typing": loader.resolved_typing(trt),
              "profile": {"min": loader.batch[0], "opt": loader.batch[1], "max": loader.batch[2]},
              "workspace_bytes": loader.workspace_bytes}  # fmt: skip
    key, entry = _entry(stage, "engine", precision, tensorrt=record)
    probe = replace(base, models={key: entry})
    crops, description = face_crops(base.preprocess, calib.directory if calib is not None else options.calib)
    figures = compare_engine_with_onnx(probe, path, stage / MODEL_FILES["onnx", "fp32"], precision,
                                       crops=crops[: options.parity_samples], crops_source=description)  # fmt: skip
    return {key: entry}, {f"engine-{precision}": figures}


def run_export(options: ExportOptions) -> ExportManifest:
    """Run the whole export and return the manifest written to ``options.out/export.json``.

    With int8 and ``calib_sources``, the calibration set is collected first (with the
    checkpoint's preprocessing), so a source without faces fails before the ONNX export.

    Raises:
        FaceSdkError: Any bad input or failed check; nothing is left on disk then.
    """
    plan = preflight(options)
    if "int8" not in options.precisions:
        return _export(options, plan, None)
    ckpt = load_checkpoint_manifest(options.ckpt, verify=False)  # verified when the model loads
    with calibration_set(options, ckpt.preprocess, ckpt.tasks) as calib:
        return _export(options, plan, calib)


def _export(options: ExportOptions, plan: ExportPlan, calib: CalibrationUse | None) -> ExportManifest:
    """The export after preflight (and the calibration set, for int8)."""
    staged = StagedDir(options.out, force=options.force)
    with staged as stage:
        base, parity = _onnx_stage(options, stage, options.ckpt)
        models = dict([_entry(stage, "onnx", "fp32")])
        for precision in (p for p in options.precisions if p != "fp32"):
            more_models, more_parity = _lowp_onnx(options, stage, base, precision, calib)
            models.update(more_models)
            parity.update(more_parity)
        # optional field: lets backend="auto" choose the OpenVINO paths this CPU could check
        models = record_openvino_agreement(
            stage, base, models, options.ckpt, calib.directory if calib else options.calib
        )
        for precision in plan.engines:
            more_models, more_parity = _engine(options, stage, base, precision, calib)
            models.update(more_models)
            parity.update(more_parity)
        layout = parity["rewrite"]["rope_layout"]  # every model file is made from this one graph
        models = {k: replace(v, extra={**v.extra, "rope_layout": layout}) for k, v in models.items()}
        manifest = replace(base, models=models, parity=parity)
        if plan.engines:
            import tensorrt as trt

            manifest = replace(manifest, versions={**manifest.versions, "tensorrt": trt.__version__})
        manifest.write(stage)
        staged.commit()
    log.info("export written to %s (%s)", options.out, ", ".join(sorted(manifest.models)))
    return manifest
