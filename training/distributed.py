"""Several training processes: torchrun detection, the process group, reductions, DDP.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and tells
each its place through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``). :func:`process_group` reads that, picks the backend (NCCL
for CUDA, gloo for CPU, or ``runtime.dist_backend``), binds the process to the GPU
``LOCAL_RANK`` and tears the group down at the end or on error. Without those variables
(a plain ``facesdk train``) it yields a single-process context and touches nothing.

The model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` with
``find_unused_parameters=False``: the multi-task loss keeps every head in the graph (a task
without labels in a batch adds an exact, attached zero), so every trainable parameter gets
a gradient in every step and DDP needs no extra graph walk to find the unused ones.
For backbones too large for one device's activations, ``runtime.grad_checkpointing`` trades
compute for memory under DDP; FSDP is not implemented yet (``docs/distributed.md``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from facesdk.errors import ConfigError

__all__ = [
    "BACKENDS",
    "BATCH_MEANINGS",
    "batch_meaning_of_state",
    "DistContext",
    "all_reduce_sum",
    "barrier",
    "gradient_sync",
    "launch_torchrun",
    "process_group",
    "rank_batch_size",
    "resolve_device",
    "torchrun_command",
    "torchrun_env",
    "world_size_change_message",
    "wrap_model",
]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "nccl", "gloo")
"""Values of ``runtime.dist_backend``."""

_LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

BATCH_MEANINGS = ("global", "per_process")
"""What ``optim.batch_size`` means: ``global`` (split across the ranks; since facesdk records the
meaning in the training state) or ``per_process`` (each rank's batch; how states written
before that were trained, and how they resume)."""


def rank_batch_size(batch_size: int, world_size: int, meaning: str = "global") -> int:
    """Each rank's share of ``optim.batch_size``.

    Raises:
        ConfigError: ``meaning`` is ``global`` and ``batch_size`` does not divide by ``world_size``.
    """
    if meaning not in BATCH_MEANINGS:
        raise ConfigError(f"batch size meaning must be one of {BATCH_MEANINGS}, got {meaning!r}")
    if world_size < 1:
        raise ConfigError(f"the number of processes must be >= 1, got {world_size}")
    if meaning == "per_process":
        return int(batch_size)
    if batch_size % world_size:
        lower = batch_size - batch_size % world_size
        raise ConfigError(
            f"optim.batch_size {batch_size} is the global batch and must divide by the {world_size} "
            f"processes; choose a multiple of {world_size} (e.g. {lower or world_size} or "
            f"{lower + world_size}) with --set optim.batch_size=N"
        )
    return int(batch_size) // world_size


def batch_meaning_of_state(progress: Mapping[str, Any]) -> str:
    """The batch-size meaning a training state was written with (older states: ``per_process``)."""
    meaning = str(progress.get("batch_size_meaning", "per_process"))
    if meaning not in BATCH_MEANINGS:
        raise ConfigError(
            f"the training state says optim.batch_size means {meaning!r}; this facesdk knows {BATCH_MEANINGS}"
        )
    return meaning


@dataclass(frozen=True, slots=True)
class DistContext:
    """Where this process stands: its rank, the world size, its rank on the node, the backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group with more than one rank is up."""
        return self.world_size > 1


def torchrun_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` set by torchrun, or ``None`` outside a launch."""
    env = os.environ if environ is None else environ
    present = [k for k in _LAUNCH_VARS if k in env]
    if not present:
        return None
    if len(present) != len(_LAUNCH_VARS):
        missing = sorted(set(_LAUNCH_VARS) - set(present))
        raise ConfigError(
            f"found {present} but not {missing} in the environment; start the run with torchrun "
            "(or facesdk train --nproc N), which sets all of them"
        )
    try:
        rank, world, local = (int(env[k]) for k in _LAUNCH_VARS)
    except ValueError:
        found = {k: env[k] for k in _LAUNCH_VARS}
        raise ConfigError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers, got {found}") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(f"inconsistent launch: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return rank, world, local


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """The device of this process: ``runtime.device`` resolved, the GPU ``local_rank`` on CUDA."""
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError("runtime.device is cuda but no CUDA device is visible; set runtime.device=cpu")
    if not (device == "cuda" or (device == "auto" and cuda)):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"this process has LOCAL_RANK {local_rank} but the node shows {count} GPU(s); "
            f"start at most {count} processes per node (--nproc-per-node)"
        )
    return torch.device("cuda", local_rank)


def _backend(choice: str, device: torch.device) -> str:
    if choice not in BACKENDS:
        raise ConfigError(f"runtime.dist_backend must be one of {BACKENDS}, got {choice!r}")
    if choice == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if choice == "nccl" and device.type != "cuda":
        raise ConfigError(
            "runtime.dist_backend is nccl, which needs CUDA devices, but this run trains on the CPU; "
            "use gloo (or auto)"
        )
    return choice


@contextlib.contextmanager
def process_group(device: str = "auto", backend: str = "auto") -> Iterator[DistContext]:
    """Join the torchrun process group for the duration of the block (or stay single-process).

    Args:
        device: ``runtime.device`` (``auto``, ``cpu``, ``cuda``).
        backend: ``runtime.dist_backend`` (``auto``: NCCL on CUDA, gloo on CPU).

    Non-main ranks log warnings and errors only, so a run prints each line once. The group is
    destroyed when the block ends, normally or by an exception.
    """
    found = torchrun_env()
    if found is None or found[1] == 1:
        yield DistContext(local_rank=found[2] if found else 0)
        return
    rank, world, local = found
    where = resolve_device(device, local)
    name = _backend(backend, where)
    if where.type == "cuda":
        torch.cuda.set_device(where)
    dist.init_process_group(name, device_id=where if name == "nccl" else None)
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        yield DistContext(rank, world, local, name)
    finally:
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if not _active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_sum(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks of a float64 vector (a copy of ``values`` in a single process)."""
    array = np.asarray(values, dtype=np.float64)
    if not _active():
        return array.copy()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    tensor = torch.from_numpy(array.copy()).to(device or "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def wrap_model(model: nn.Module, world_size: int, strategy: str = "ddp") -> nn.Module:
    """The module the training loop calls: ``model`` itself, or DDP around it.

    The optimizer, checkpoints and resume state keep using ``model`` (DDP shares its
    parameters), so parameter names and files do not depend on the world size.
    """
    if world_size <= 1:
        return model
    if strategy != "ddp":
        raise ConfigError(f"runtime.distributed supports ddp only, got {strategy!r}")
    device = next(model.parameters()).device
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=False,
    )


@contextlib.contextmanager
def gradient_sync(net: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce for an accumulation micro-batch (``enabled=False``)."""
    if enabled:
        yield
    elif isinstance(net, DistributedDataParallel):
        with net.no_sync():
            yield
    else:
        yield


def world_size_change_message(
    state_dir: object,
    saved: int,
    now: int,
    progress: Mapping[str, Any],
    draws: int,
    per_rank_batch: int,
    meaning: str = "per_process",
) -> str:
    """What resuming a state saved by ``saved`` processes with ``now`` processes means.

    ``per_rank_batch`` is each rank's samples per optimizer step under the *old* world size
    (the batch times ``optim.accumulate``); ``meaning`` is the state's batch-size meaning.
    """
    head = (
        f"the state in {state_dir} was saved by {saved} process(es); this run has {now}. Training "
        f"continues after draw {progress['consumed']} of {draws} of epoch {progress['epoch'] + 1}: the "
        f"remaining draws are re-sharded over {now} rank(s), none repeated or skipped, "
    )
    total = per_rank_batch * saved
    if meaning == "global":
        return head + (
            f"and the global batch stays {total} samples per optimizer step ({total // now} per rank "
            f"instead of {per_rank_batch}), so the learning-rate schedule is unchanged"
        )
    return head + (
        f"but the global batch changes from {total} to {per_rank_batch * now} samples per optimizer "
        "step (this state was written when optim.batch_size meant the batch per process), and the "
        "learning-rate schedule, laid out for the old number of steps per epoch, now "
        "follows the new one from the saved step on"
    )


def torchrun_command(nproc: int, train_args: Sequence[str]) -> list[str]:
    """The torchrun command line that runs ``facesdk train <train_args>`` in ``nproc`` processes."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "facesdk.training",
        "train",
        *train_args,
    ]


def launch_torchrun(nproc: int, train_args: Sequence[str]) -> int:
    """Run ``facesdk train`` under torchrun on this machine; return torchrun's exit code."""
    if torchrun_env() is not None:
        raise ConfigError("--nproc starts torchrun itself; inside a torchrun launch leave it out")
    cmd = torchrun_command(nproc, train_args)
    log.info("launching %d processes: %s", nproc, " ".join(cmd))
    return subprocess.run(cmd, check=False).returncode
