"""Distributed training: sharding without loss or repeats, DDP's gradient contract, a real 2-process run."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facesdk.contract.checkpoint import HeadSpec, MethodSpec
from facesdk.errors import ConfigError
from facesdk.tasks import DEFAULT_TASKS
from facesdk.training import build_model
from facesdk.training.distributed import (
    batch_meaning_of_state,
    rank_batch_size,
    torchrun_command,
    torchrun_env,
    world_size_change_message,
)
from facesdk.training.losses import MultiTaskLoss
from facesdk.training.sampler import TaskBalancedSampler, is_padding

ROOT = Path(__file__).resolve().parents[2]
NAMES = [t.name for t in DEFAULT_TASKS]


def _labels(n: int, seed: int = 0) -> np.ndarray:
    labels = np.random.default_rng(seed).integers(0, 2, size=(n, 3))
    labels[::3, 2] = -1
    return labels


def _shares(
    labels: np.ndarray, kind: str, world_size: int, epoch: int = 1, consumed: int = 0
) -> list[list[int]]:
    shares = []
    for rank in range(world_size):
        sampler = TaskBalancedSampler(labels, NAMES, kind=kind, seed=3, rank=rank, world_size=world_size)
        sampler.set_epoch(epoch, consumed=consumed)
        shares.append(list(sampler))
        assert len(shares[-1]) == len(sampler)
    return shares


def _interleave(shares: list[list[int]]) -> list[int]:
    """The ranks' entries back in the epoch's order (rank r holds entries r, r + w, ...)."""
    return [share[i] for i in range(len(shares[0])) for share in shares]


@pytest.mark.parametrize("kind", ["uniform", "balanced"])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [13, 16, 3])
def test_ranks_cover_every_draw_exactly_once(kind: str, world_size: int, n: int) -> None:
    labels = _labels(n)
    shares = _shares(labels, kind, world_size)
    assert len({len(s) for s in shares}) == 1  # DDP: every rank runs the same number of batches
    order = TaskBalancedSampler(labels, NAMES, kind=kind, seed=3)
    order.set_epoch(1)
    draws = _interleave(shares)
    real = [i for i in draws if not is_padding(i)]
    padding = [~i for i in draws if is_padding(i)]
    assert real == order.epoch_indices().tolist()  # each draw once, none dropped, none added
    assert len(padding) == (-n) % world_size < world_size
    assert all(0 <= i < n for i in padding)
    if kind == "uniform":
        assert sorted(real) == list(range(n))


@pytest.mark.parametrize(("before", "after"), [(2, 2), (2, 3), (4, 1), (1, 2), (3, 4)])
def test_a_resumed_epoch_continues_after_the_consumed_draws(before: int, after: int) -> None:
    labels = _labels(29)
    batch, steps = 2, 3
    consumed = steps * batch * before  # what `before` ranks trained on in `steps` batches each
    full = _shares(labels, "balanced", before)
    order = [i for i in _interleave(full) if not is_padding(i)]  # padding sits at the very end
    rest = _shares(labels, "balanced", after, consumed=consumed)
    assert [i for i in _interleave(rest) if not is_padding(i)] == order[consumed:]
    if before == after:  # the same world size continues with exactly the batches it would have run
        assert rest == [share[steps * batch :] for share in full]


def test_padding_marker_is_the_row_without_labels(tiny_synth) -> None:  # noqa: ANN001
    from facesdk.preprocess import Preprocess
    from facesdk.training.data import FaceDataset, read_manifest

    rows = read_manifest(tiny_synth.train)
    data = FaceDataset(rows, DEFAULT_TASKS, Preprocess(input_size=(32, 32)), hflip=True, seed=0)
    x, y = data[4]
    xp, yp = data[~4]
    assert torch.equal(x, xp) and (yp == -1).all() and (y >= 0).any()
    with pytest.raises(IndexError):
        data[len(rows)]


def test_every_trainable_parameter_gets_a_gradient(tiny_backbone, trained_method, method_options) -> None:  # noqa: ANN001
    """Why DDP runs with find_unused_parameters=False: even a task without a single label in the
    batch keeps its head in the graph (an attached zero), so every trainable parameter has a
    gradient after every backward, and DDP's all-reduce never waits for a missing one."""
    _check_every_gradient(tiny_backbone, trained_method, method_options[trained_method], checkpointing=False)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_every_gradient_with_gradient_checkpointing(tiny_backbone, method, method_options) -> None:  # noqa: ANN001
    _check_every_gradient(tiny_backbone, method, method_options[method], checkpointing=True)


def _check_every_gradient(tiny_backbone, method: str, options: dict, checkpointing: bool) -> None:  # noqa: ANN001
    from facesdk.training.trainer import _timm_model

    backbone = tiny_backbone.__class__(tiny_backbone.name, "random", {**tiny_backbone.kwargs, "depth": 2})
    heads = {t.name: HeadSpec() for t in DEFAULT_TASKS}
    torch.manual_seed(0)
    model, _, _ = build_model(backbone, DEFAULT_TASKS, heads, MethodSpec(method, options))
    if checkpointing:
        _timm_model(model.backbone).set_grad_checkpointing(True)
    model.train()
    labels = torch.tensor([[1, 0, -1], [3, -1, -1], [-1, 1, -1], [0, 1, -1]])  # no emotion label
    loss, _ = MultiTaskLoss(DEFAULT_TASKS)(model(torch.randn(4, 3, 32, 32)), labels)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert all((p.grad == 0).all() for p in model.heads["emotion"].parameters())


def test_torchrun_environment_is_read_and_checked() -> None:
    assert torchrun_env({}) is None
    assert torchrun_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == (1, 2, 1)
    with pytest.raises(ConfigError, match="LOCAL_RANK"):
        torchrun_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="inconsistent"):
        torchrun_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_nproc_launches_torchrun_and_returns_its_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from facesdk.training import cli

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    seen = []

    def fake_run(cmd: list[str], check: bool) -> subprocess.CompletedProcess:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 3)

    monkeypatch.setattr(subprocess, "run", fake_run)
    argv = ["--config", str(ROOT / "configs/smoke.yaml"), "--nproc", "2", "--out", "x", "--set", "seed=1"]
    assert cli.train_main(argv) == 3
    assert seen == [
        torchrun_command(2, ["--config", str(ROOT / "configs/smoke.yaml"), "--out", "x", "--set", "seed=1"])
    ]
    assert seen[0][:7] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
    ]
    with pytest.raises(ConfigError, match="nproc must be >= 1"):
        torchrun_command(0, [])


# ---------------------------------------------------------------------------- the global batch
def test_the_global_batch_is_split_across_ranks_or_refused() -> None:
    assert [rank_batch_size(64, n) for n in (1, 2, 4, 8)] == [64, 32, 16, 8]
    with pytest.raises(ConfigError, match=r"64 is the global batch.*divide by the 3 processes.*63 or 66"):
        rank_batch_size(64, 3)
    assert rank_batch_size(64, 3, "per_process") == 64  # how states written before resume
    with pytest.raises(ConfigError, match=">= 1"):
        rank_batch_size(64, 0)


def test_states_without_a_recorded_meaning_meant_the_batch_per_process() -> None:
    assert batch_meaning_of_state({"epoch": 1, "world_size": 2}) == "per_process"
    assert batch_meaning_of_state({"batch_size_meaning": "global"}) == "global"
    with pytest.raises(ConfigError, match="'per_gpu'"):
        batch_meaning_of_state({"batch_size_meaning": "per_gpu"})


def test_nproc_refuses_a_batch_that_does_not_divide_before_launching(monkeypatch: pytest.MonkeyPatch) -> None:
    from facesdk.training import cli

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("torchrun was launched"))
    argv = ["--config", str(ROOT / "configs/smoke.yaml"), "--nproc", "3", "--out", "x"]
    with pytest.raises(ConfigError, match="optim.batch_size 64 is the global batch"):
        cli.train_main(argv)


def _write_state(out: Path, progress: dict) -> None:
    (out / "state").mkdir(parents=True)
    (out / "state" / "state.json").write_text(json.dumps({"progress": progress}))


@pytest.fixture()
def gloo_group(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # noqa: ANN201
    """A one-rank gloo process group: enough for a Trainer told it has more ranks to be built."""
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    ("progress", "meaning", "rank_batch"),
    [
        (None, "global", 32),  # a new run: 64 over 2 ranks
        ({"world_size": 2, "epoch": 0}, "per_process", 64),  # a state written before: as it was
        ({"world_size": 2, "batch_size_meaning": "global"}, "global", 32),
    ],
)
def test_trainer_batch_follows_the_meaning_its_state_was_written_with(
    gloo_group: None, tmp_path: Path, progress: dict | None, meaning: str, rank_batch: int
) -> None:
    from facesdk.training.config import load_config
    from facesdk.training.trainer import Trainer

    if progress is not None:
        _write_state(tmp_path, progress)
    trainer = Trainer(load_config(ROOT / "configs/smoke.yaml"), tmp_path, resume=True, rank=0, world_size=2)
    assert (trainer.batch_meaning, trainer.batch_size) == (meaning, rank_batch)


def test_a_world_size_change_keeps_the_global_batch_only_under_the_global_meaning() -> None:
    progress = {"consumed": 100, "epoch": 0}
    kept = world_size_change_message("s", 4, 2, progress, 1000, 8, "global")
    assert "global batch stays 32 samples per optimizer step (16 per rank instead of 8)" in kept
    old = world_size_change_message("s", 4, 2, progress, 1000, 8, "per_process")
    assert "changes from 32 to 16" in old


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("runtime.distributed=fsdp", "fsdp is not implemented yet"),
        ("runtime.distributed=zero3", "must be ddp"),
        ("runtime.dist_backend=nccl", "nccl needs CUDA"),
        ("runtime.dist_backend=mpi", "auto, nccl or gloo"),
    ],
)
def test_distributed_settings_are_checked(override: str, match: str) -> None:
    from facesdk.training.config import load_config

    with pytest.raises(ConfigError, match=match):
        load_config(ROOT / "configs/smoke.yaml", [override])


def test_a_world_size_without_a_process_group_is_refused(tmp_path: Path) -> None:
    from facesdk.training.config import load_config
    from facesdk.training.trainer import Trainer

    with pytest.raises(ConfigError, match="needs a process group"):
        Trainer(load_config(ROOT / "configs/smoke.yaml"), tmp_path, rank=0, world_size=2)


# ---------------------------------------------------------------------------- the real 2-process run
SHORT = (
    "data.synthetic={count: 800, missing: 0.3, seed: 0, size: 32}",
    "optim.epochs=3",
    "optim.warmup_steps=5",
    "runtime.threads=1",
    "runtime.save_every=7",
)
"""configs/smoke.yaml shrunk to 3 epochs of 640 training images (60 optimizer steps)."""
GLOBAL_BATCH = 32
TOLERANCE = 0.05
"""Largest difference in validation accuracy (per task) between the 1- and 2-process runs."""


def _train(out: Path, nproc: int | None, *extra: str) -> subprocess.Popen:
    # the same config for both: optim.batch_size is the global batch, so the same steps and schedule
    sets = [a for item in (*SHORT, f"optim.batch_size={GLOBAL_BATCH}") for a in ("--set", item)]
    cmd = [sys.executable, "-m", "facesdk", "train", "--config", str(ROOT / "configs/smoke.yaml")]
    cmd += ["--out", str(out), *sets, *(["--nproc", str(nproc)] if nproc else []), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The short smoke config trained by ``facesdk train --nproc 2`` and by one process, side by side."""
    root = tmp_path_factory.mktemp("dist")
    runs = {"two": _train(root / "two", 2), "one": _train(root / "one", None)}
    for name, proc in runs.items():
        output, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"the {name}-process run failed ({proc.returncode}):\n{output[-4000:]}")
    return {name: root / name for name in runs}


def _manifest(out: Path) -> dict:
    return json.loads((out / "checkpoint" / "checkpoint.json").read_text())


@pytest.mark.slow
def test_two_processes_write_one_checkpoint_and_match_one_process(two_runs: dict[str, Path]) -> None:
    out = two_runs["two"]
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint",
        "config.yaml",
        "curves.png",
        "data",
        "log.csv",
        "state",
    ]  # one checkpoint, one state, no temporary or per-rank leftovers
    two, one = _manifest(out)["training"], _manifest(two_runs["one"])["training"]
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["global_batch_size"] == one["global_batch_size"] == GLOBAL_BATCH
    assert two["steps"] == one["steps"] == 60
    assert len((out / "log.csv").read_text().splitlines()) == 1 + 3
    for task in NAMES:
        assert two["best"][task]["n"] == one["best"][task]["n"]  # every validation row, once
        assert abs(two["final"][task]["acc"] - one["final"][task]["acc"]) <= TOLERANCE, task
    assert two["final"]["age"]["acc"] > 0.7  # it learned (random: 1/9)


@pytest.mark.slow
def test_sharded_validation_counts_equal_one_process_evaluation(two_runs: dict[str, Path]) -> None:
    from facesdk.training import load_checkpoint_with_manifest
    from facesdk.training.data import FaceDataset, read_manifest
    from facesdk.training.reporting import accuracy_metrics

    out = two_runs["two"]
    model, manifest = load_checkpoint_with_manifest(out / "checkpoint")
    data = FaceDataset(read_manifest(out / "data" / "val.csv"), manifest.tasks, manifest.preprocess)
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        logits = model(x)
    recorded = manifest.training["best"]
    for j, task in enumerate(manifest.tasks):
        pred = logits[task.name].argmax(1).numpy()
        found = accuracy_metrics(pred, data.labels[:, j].numpy(), task.num_classes)
        assert found["n"] == recorded[task.name]["n"]
        assert abs(found["acc"] - recorded[task.name]["acc"]) <= 1 / found["n"] + 1e-12  # one row at most


@pytest.mark.slow
def test_resuming_with_another_world_size_says_so(
    two_runs: dict[str, Path], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from facesdk.training.cli import train_main

    out = tmp_path / "two"
    shutil.copytree(two_runs["two"], out)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        with caplog.at_level(logging.INFO, logger="facesdk"):
            assert train_main(["--out", str(out), "--resume"]) == 0
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "saved by 2 process(es); this run has 1" in m and "global batch stays 32" in m for m in said
    ), said
