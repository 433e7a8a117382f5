"""Checkpoint directories: build a model from a manifest, save one, load one (never unpickling)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from facesdk.contract.checkpoint import (
    WEIGHTS_FILE,
    BackboneSpec,
    CheckpointManifest,
    HeadSpec,
    MethodSpec,
    load_checkpoint_manifest,
)
from facesdk.contract.manifest_io import FileEntry
from facesdk.errors import ManifestError
from facesdk.outputs import StagedDir
from facesdk.preprocess import CropPolicy, Preprocess
from facesdk.tasks import TaskSpec

from .backbones import resolve_target
from .methods import count_parameters, get_method
from .model import MultiTaskModel, create_backbone, preprocess_from_backbone

__all__ = [
    "build_model",
    "save_checkpoint",
    "load_checkpoint",
    "load_checkpoint_with_manifest",
    "library_versions",
    "replace_directory",
]

log = logging.getLogger(__name__)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a checkpoint."""
    import peft
    import timm

    import facesdk

    return {
        "facesdk": facesdk.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "peft": peft.__version__,
    }


def build_model(
    backbone: BackboneSpec,
    tasks: Sequence[TaskSpec],
    heads: Mapping[str, HeadSpec],
    method: MethodSpec,
    load_weights: bool = True,
    crop: CropPolicy | None = None,
) -> tuple[MultiTaskModel, Preprocess, MethodSpec]:
    """Build the backbone, heads and adapters.

    Returns:
        The model, its preprocessing spec (from the backbone's pretrained config) and the
        method spec with every default filled in (what a checkpoint records).
    """
    impl = get_method(method.name)
    config = impl.normalize(method.config)
    net = create_backbone(backbone, load_weights=load_weights)
    if "target" in config:  # record the layers 'auto' chose for this backbone, not 'auto'
        config = {**config, "target": resolve_target(str(config["target"]), net)}
    preprocess = preprocess_from_backbone(net, crop)
    model = MultiTaskModel(net, tasks, heads)
    model = impl.apply(model, config)
    return model, preprocess, MethodSpec(name=method.name, config=config)


def replace_directory(tmp: Path, final: Path) -> None:
    """Swap a fully written ``tmp`` directory into place of ``final``."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(
    model: MultiTaskModel,
    directory: str | os.PathLike[str],
    *,
    backbone: BackboneSpec,
    preprocess: Preprocess,
    tasks: Sequence[TaskSpec],
    method: MethodSpec,
    heads: Mapping[str, HeadSpec],
    training: Mapping[str, Any] | None = None,
    temperatures: Mapping[str, float] | None = None,
) -> CheckpointManifest:
    """Write ``model.safetensors`` and ``checkpoint.json``; the directory appears whole or not at all.

    ``temperatures`` (task -> softmax temperature, see ``facesdk.contract.temperatures``) go into the manifest.
    """
    staged = StagedDir(directory, force=True)
    with staged as tmp:  # removed on an error, SIGINT or SIGTERM; a killed run's is cleaned next time
        # save_model drops the duplicate names of shared tensors (VeRA's projections); the
        # loader rebuilds the same module tree, which shares them again.
        save_model(model, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        manifest = CheckpointManifest(
            backbone=backbone,
            preprocess=preprocess,
            tasks=tuple(tasks),
            method=method,
            heads=dict(heads),
            files={WEIGHTS_FILE: FileEntry.of(tmp, WEIGHTS_FILE)},
            training=dict(training or {}),
            params=count_parameters(model),
            versions=library_versions(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            temperatures=dict(temperatures or {}),
        )
        manifest.write(tmp)
        staged.commit(swap=replace_directory)
    return manifest


def load_checkpoint_with_manifest(
    path: str | os.PathLike[str], verify: bool = True
) -> tuple[MultiTaskModel, CheckpointManifest]:
    """Load a checkpoint directory into an unmerged model in eval mode, with its manifest."""
    manifest = load_checkpoint_manifest(path, verify=verify)
    model, _, _ = build_model(
        manifest.backbone,
        manifest.tasks,
        manifest.heads,
        manifest.method,
        load_weights=False,
        crop=manifest.preprocess.crop,
    )
    missing, unexpected = load_model(model, str(Path(path) / WEIGHTS_FILE), strict=False, device="cpu")
    if missing or unexpected:
        raise ManifestError(
            f"{path}: weights do not fit the model its manifest describes "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}); "
            "the checkpoint is corrupt or was written by an incompatible facesdk"
        )
    model.eval()
    return model, manifest


def load_checkpoint(path: str | os.PathLike[str], verify: bool = True) -> nn.Module:
    """Load a checkpoint directory into an unmerged :class:`MultiTaskModel` in eval mode."""
    return load_checkpoint_with_manifest(path, verify=verify)[0]
