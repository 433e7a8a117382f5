"""The export pipeline: checkpoint -> merged model -> ONNX (fp32/fp16/int8) -> engines -> export dir.

Everything is written into a hidden staging directory beside ``out`` and renamed into place
at the end, so a failed or interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facesdk.checkpoint import CHECKPOINT_MANIFEST, CheckpointManifest
from facesdk.errors import ConfigError, FaceSdkError, ManifestError
from facesdk.export_manifest import ExportManifest, ModelEntry, TensorSpec
from facesdk.manifest_io import FileEntry, sha256_file

from .cpu_paths import bf16_agreement
from .errors import ExportError
from .flops import complexity_record
from .fp16 import convert_to_fp16
from .merge import check_merge, merge_adapters
from .onnx_export import INPUT_NAME, check_onnx, compare_onnx_torch, embed_metadata, export_onnx, ort_session
from .options import ExportOptions, load_quantizer, preflight
from .rewrite import resolve_rope_layout, rewrite_for_export
from .tensorrt_build import EngineFromOnnx, check_engine_io, cuda_device_info, default_timing_cache

__all__ = ["run_export", "load_for_export", "load_validation_crops", "VALIDATION_CROPS", "MODEL_FILES"]

log = logging.getLogger(__name__)

VALIDATION_CROPS = "validation_crops.safetensors"
"""Optional file in a checkpoint dir: tensor ``input`` (N x 3 x H x W, preprocessed crops)."""

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


def load_validation_crops(ckpt: Path, manifest: CheckpointManifest) -> torch.Tensor | None:
    """The checkpoint's validation crops, if it ships them (see :data:`VALIDATION_CROPS`)."""
    name = str(manifest.training.get("validation_crops", VALIDATION_CROPS))
    path = ckpt / name
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    crops = load_file(str(path)).get("input")
    if crops is None or crops.ndim != 4 or tuple(crops.shape[2:]) != tuple(manifest.preprocess.input_size):
        raise ManifestError(f"{path} must hold a tensor 'input' of N x 3 x {manifest.preprocess.input_size}")
    return crops.float()


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
    embed_metadata(onnx_path, base.onnx_metadata())
    parity = {"merge": merge.to_json(), "rewrite": rewrite.to_json(), "onnx_vs_torch": onnx_parity}
    return base, parity


def _onnx_agreement(
    reference: Path, candidate: Path, manifest: ExportManifest, samples: int = 64
) -> dict[str, Any]:
    """Top-1 agreement and max logit difference of two ONNX models on ORT CPU (random inputs)."""
    h, w = manifest.preprocess.input_size
    x = np.random.default_rng(0).standard_normal((samples, 3, h, w)).astype(np.float32)
    names = [o.name for o in manifest.outputs]
    ref = ort_session(reference).run(names, {INPUT_NAME: x})
    got = ort_session(candidate).run(names, {INPUT_NAME: x})
    return {
        "samples": samples,
        "reference": "onnxruntime fp32 (CPU)",
        "tasks": {
            n: {
                "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
                "max_abs_diff": float(np.abs(a - b).max()),
            }
            for n, a, b in zip(names, ref, got, strict=True)
        },
    }


def _entry(stage: Path, fmt: str, precision: str, **kwargs: Any) -> tuple[str, ModelEntry]:
    name = MODEL_FILES[fmt, precision]
    return ExportManifest.model_key(fmt, precision), ModelEntry(
        FileEntry.of(stage, name), fmt, precision, **kwargs
    )


def _lowp_onnx(
    options: ExportOptions, stage: Path, base: ExportManifest, precision: str
) -> tuple[dict, dict]:
    """Write model.fp16.onnx or model.int8.onnx; return (models, parity) additions."""
    fp32 = stage / MODEL_FILES["onnx", "fp32"]
    out = stage / MODEL_FILES["onnx", precision]
    extra: dict[str, Any] = {}
    if precision == "fp16":
        convert_to_fp16(fp32, out)
        parity = _onnx_agreement(fp32, out, base)
    else:
        quantize = load_quantizer()
        assert options.calib is not None  # preflight guarantees it
        try:
            report = quantize(
                fp32, options.calib, out, base.preprocess, base.tasks, **dict(options.int8_options)
            )
        except FaceSdkError:
            raise
        except Exception as exc:  # a bug or an ORT quantizer error inside the calibration stage
            raise ExportError(
                f"INT8 quantization (facesdk.calibration.quantize_export) failed: {type(exc).__name__}: {exc}"
            ) from exc
        extra = {"calibration": dict(report or {}), "options": dict(options.int8_options)}
        parity = {"calibration_report": dict(report or {}), **_onnx_agreement(fp32, out, base)}
        embed_metadata(out, base.onnx_metadata())
    key, entry = _entry(stage, "onnx", precision, extra=extra)
    return {key: entry}, {f"onnx-{precision}": parity}


def _engine(options: ExportOptions, stage: Path, base: ExportManifest, precision: str) -> tuple[dict, dict]:
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
    figures = compare_engine_with_onnx(probe, path, stage / MODEL_FILES["onnx", "fp32"], precision,
                                       samples=options.parity_samples)  # fmt: skip
    return {key: entry}, {f"engine-{precision}": figures}


def _publish_modes(stage: Path) -> None:
    """Give the staged directory and files the modes the umask allows (mkdtemp/mkstemp make them private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)
    for path in stage.iterdir():
        os.chmod(path, 0o666 & ~umask)


def _finish(stage: Path, out: Path, force: bool) -> None:
    """Rename the staged directory onto ``out`` (replacing it only with ``force``)."""
    _publish_modes(stage)
    old = None
    if out.exists():
        if not force:
            raise ConfigError(
                f"output directory {out} appeared during the export; pass --force to replace it"
            )
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_export(options: ExportOptions) -> ExportManifest:
    """Run the whole export and return the manifest written to ``options.out/export.json``.

    Raises:
        FaceSdkError: Any bad input or failed check; nothing is left on disk then.
    """
    preflight(options)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{options.out.name}.export-", dir=options.out.parent))
    try:
        base, parity = _onnx_stage(options, stage, options.ckpt)
        models = dict([_entry(stage, "onnx", "fp32")])
        bf16 = bf16_agreement(stage / MODEL_FILES["onnx", "fp32"], base, options.ckpt, options.calib)
        if bf16 is not None:  # optional field: lets backend="auto" choose OpenVINO BF16
            fp32 = models["onnx-fp32"]
            models["onnx-fp32"] = replace(fp32, extra={**fp32.extra, "openvino_bf16": bf16})
        for precision in (p for p in options.precisions if p != "fp32"):
            more_models, more_parity = _lowp_onnx(options, stage, base, precision)
            models.update(more_models)
            parity.update(more_parity)
        for precision in options.engines:
            more_models, more_parity = _engine(options, stage, base, precision)
            models.update(more_models)
            parity.update(more_parity)
        layout = parity["rewrite"]["rope_layout"]  # every model file is made from this one graph
        models = {k: replace(v, extra={**v.extra, "rope_layout": layout}) for k, v in models.items()}
        manifest = replace(base, models=models, parity=parity)
        if options.engines:
            import tensorrt as trt

            manifest = replace(manifest, versions={**manifest.versions, "tensorrt": trt.__version__})
        manifest.write(stage)
        _finish(stage, options.out, options.force)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("export written to %s (%s)", options.out, ", ".join(sorted(manifest.models)))
    return manifest
