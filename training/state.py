"""Resume state without pickle: tensors in safetensors, everything else in JSON.

``OUT/state/`` holds ``trainable.safetensors`` (the trainable weights), ``optimizer.safetensors``
(every tensor of the optimizer state, flattened to ``state.<param index>.<key>``), the RNG
states as uint8 tensors in ``rng.safetensors`` and ``state.json`` (step, epoch, position in
the epoch, scheduler, optimizer param groups, history, best score). The directory is
written to a temporary name and swapped in whole, so a run killed at any moment leaves
either the previous state or the new one.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from facesdk.errors import ManifestError
from facesdk.outputs import StagedDir

from .checkpoint_io import replace_directory

__all__ = ["STATE_VERSION", "save_state", "load_state", "rng_state", "restore_rng", "trainable_state"]

STATE_VERSION = 1


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (contiguous CPU copies)."""
    return {n: p.detach().cpu().contiguous().clone() for n, p in model.named_parameters() if p.requires_grad}


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta["plain"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states: tensors plus JSON."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    plain = {
        "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), py_gauss],
    }
    return {"tensors": tensors, "plain": plain}


def restore_rng(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = plain["python"]
    random.setstate((version, tuple(internal), py_gauss))


def save_state(
    directory: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: dict[str, Any],
) -> None:
    """Write the resume state atomically (see the module docstring)."""
    staged = StagedDir(directory, force=True)
    with staged as tmp:  # removed on an error, SIGINT or SIGTERM; a killed run's is cleaned next time
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        rng = rng_state()
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        save_file(rng["tensors"], str(tmp / "rng.safetensors"))
        meta = {
            "state_version": STATE_VERSION,
            "progress": progress,
            "optimizer": opt_meta,
            "scheduler": scheduler.state_dict(),
            "rng": rng["plain"],
        }
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
        with open(tmp / "state.json", "rb") as fh:
            os.fsync(fh.fileno())
        staged.commit(swap=replace_directory)


def load_state(
    directory: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Load a state into ``model``, ``optimizer`` and ``scheduler``; restore RNGs; return the progress.

    Raises:
        ManifestError: The state is missing, of another version, or damaged (a truncated or
            edited file); the message names the file and the way out.
    """
    directory = Path(directory)
    try:
        return _load_state(directory, model, optimizer, scheduler)
    except ManifestError:
        raise
    except Exception as exc:  # json, safetensors and torch errors of a damaged file
        raise ManifestError(
            f"the training state in {directory} is damaged ({type(exc).__name__}: {_short(exc)}); "
            f"delete {directory} to restart the run from scratch with --resume, or train into a new --out"
        ) from exc


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _load_state(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    meta_path = directory / "state.json"
    if not meta_path.is_file():
        raise ManifestError(f"{directory} holds no training state (state.json missing)")
    meta = json.loads(meta_path.read_text())
    if meta.get("state_version") != STATE_VERSION:
        raise ManifestError(
            f"{directory}: training state version {meta.get('state_version')}, this facesdk reads {STATE_VERSION}"
        )
    weights = load_file(str(directory / "trainable.safetensors"))
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        raise ManifestError(
            f"{directory}: the saved trainable weights do not match the model "
            f"(extra {sorted(set(weights) - expected)[:4]}, missing {sorted(expected - set(weights))[:4]})"
        )
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    opt = _unflatten_optimizer(load_file(str(directory / "optimizer.safetensors")), meta["optimizer"])
    optimizer.load_state_dict(opt)
    scheduler.load_state_dict(meta["scheduler"])
    restore_rng(load_file(str(directory / "rng.safetensors")), meta["rng"])
    return meta["progress"]
