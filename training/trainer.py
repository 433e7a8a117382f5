"""The training loop: AdamW with the method's groups, warmup + cosine, accumulation, resume.

Output layout under ``OUT``: ``config.yaml`` (resolved config), ``checkpoint/`` (best
checkpoint, what export consumes), ``state/`` (resume state), ``log.csv``, ``curves.png``
and, for a synthetic set, ``data/``. All writes go through :class:`Reporter` (rank zero).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from facesdk.errors import ConfigError
from facesdk.preprocess import CropPolicy

from .checkpoint_io import build_model, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import FaceDataset
from .datasets.manifest import ManifestRow, read_manifest, read_prepare_info
from .datasets.mixing import sources_from_config
from .distributed import (
    all_reduce_sum,
    barrier,
    batch_meaning_of_state,
    gradient_sync,
    rank_batch_size,
    resolve_device,
    world_size_change_message,
    wrap_model,
)
from .losses import MultiTaskLoss, balanced_class_weights
from .methods import count_parameters, get_method
from .model import MultiTaskModel
from .reporting import Reporter, confusion_metrics
from .sampler import TaskBalancedSampler, shard
from .state import load_state, save_state, trainable_state
from .synthetic import generate_synthetic
from .temperature import fit_on_dataset

__all__ = ["Trainer", "read_split_rows", "source_weights", "crop_policy_of", "cosine_schedule"]

log = logging.getLogger(__name__)


def read_split_rows(config: TrainConfig, out: Path) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Read (validating) the train and validation rows; generate the synthetic set if asked."""
    data = config.data
    if data.train is None:
        synth = generate_synthetic(out / "data", data.synth_options())
        return read_manifest(synth.train), read_manifest(synth.val)
    train = [row for src in sources_from_config(data.train) for row in read_manifest(src.manifest)]
    return train, read_manifest(str(data.val))


def source_weights(config: TrainConfig) -> np.ndarray | None:
    """Per training row, its dataset's mix weight over the dataset's row count; ``None`` if unweighted.

    With weights ``w_d`` the balanced sampler draws dataset ``d`` in proportion to ``w_d``
    (before the task balancing); the uniform sampler cannot honour weights and refuses them.
    """
    if config.data.train is None:
        return None
    sources = sources_from_config(config.data.train)
    if all(s.weight == 1.0 for s in sources):
        return None
    if config.data.sampler != "balanced":
        raise ConfigError(
            "data.train gives dataset weights, which only the balanced sampler honours; "
            "set data.sampler: balanced or drop the weights"
        )
    parts = [
        np.full(len(rows), s.weight * 1.0 / max(1, len(rows)))
        for s in sources
        for rows in [read_manifest(s.manifest)]
    ]
    weights = np.concatenate(parts)
    return weights / weights.mean()


def crop_policy_of(config: TrainConfig) -> CropPolicy:
    """The crop policy the checkpoint records: the one ``facesdk data prepare`` cut the crops with.

    The runtime must cut faces the way the training crops were cut, so it is read from the
    ``prepare.json`` beside the training manifests (all must agree); manifests without one
    (ready-made crops) give ``full``: the whole image is the crop. The synthetic set is drawn
    as centred, upright faces with context around them, the layout the default five-point
    alignment produces, so a model trained on it records that default and the Analyzer aligns
    real faces the same way.
    """
    if config.data.train is None:
        return CropPolicy()
    found = {}
    for src in sources_from_config(config.data.train):
        info = read_prepare_info(src.manifest) or {}
        crop = (info.get("preprocess") or {}).get("crop")
        found[str(src.manifest)] = CropPolicy.from_json(crop) if crop else CropPolicy(kind="full")
    if len(set(found.values())) > 1:
        raise ConfigError(
            f"the training manifests were cut with different crop policies {found}; "
            "prepare every dataset with the same --crop and --margin"
        )
    return next(iter(found.values()))


def cosine_schedule(total_steps: int, warmup: int, min_ratio: float):  # noqa: ANN201 - a lambda
    """LR factor per optimizer step: linear warmup to 1, then cosine down to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        span = max(1, total_steps - warmup)
        t = min(1.0, (step - warmup) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return factor


@dataclass(frozen=True)
class _Setup:
    device: torch.device
    autocast: bool


def _runtime(config: TrainConfig, reporter: Reporter, local_rank: int = 0) -> _Setup:
    rt = config.runtime
    device = resolve_device(rt.device, local_rank)
    if rt.threads:
        torch.set_num_threads(int(rt.threads))
    if rt.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    if device.type != "cuda" and rt.precision == "bf16":
        reporter.info("bf16 autocast runs on CUDA only; this CPU run uses fp32")
    _seed_all(config.seed)  # the same on every rank: every rank builds the same initial model
    return _Setup(device, device.type == "cuda" and rt.precision == "bf16")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _timm_model(backbone: torch.nn.Module) -> torch.nn.Module:
    get_base = getattr(backbone, "get_base_model", None)
    return get_base() if callable(get_base) else backbone


def _recover_swapped_state(state_dir: Path) -> None:
    """Put back a state a kill caught between the two renames of ``replace_directory``."""
    if state_dir.exists():
        return
    olds = sorted(state_dir.parent.glob(f".{state_dir.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and (olds[-1] / "state.json").is_file():
        os.replace(olds[-1], state_dir)


def saved_batch_meaning(state_dir: Path) -> str:
    """The batch-size meaning of the state in ``state_dir`` (``global`` when there is none yet).

    States written before the meaning was recorded mean the batch per process. An unreadable
    ``state.json`` counts as ``global`` here; loading the state then reports what is wrong.
    """
    try:
        progress = json.loads((state_dir / "state.json").read_text())["progress"]
    except (OSError, ValueError, KeyError, TypeError):
        return "global"
    return batch_meaning_of_state(progress)


class Trainer:
    """One training run.

    Args:
        config: The checked config.
        out: Output folder.
        resume: Continue from ``out/state`` when it exists.
        rank, world_size, local_rank: This process's place in a torchrun launch (see
            :func:`facesdk.training.distributed.process_group`, which must be active when
            ``world_size > 1``). ``optim.batch_size`` is the global batch, split across the
            ranks (it must divide by ``world_size``); a resumed state written when it meant the
            batch per process keeps that meaning (:func:`saved_batch_meaning`). Samples per
            optimizer step: ``batch_size * accumulate``.
    """

    def __init__(
        self,
        config: TrainConfig,
        out: str | os.PathLike[str],
        resume: bool = False,
        rank: int = 0,
        world_size: int = 1,
        local_rank: int = 0,
    ) -> None:
        self.config, self.out, self.resume = config, Path(out), resume
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        if world_size > 1 and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ConfigError(
                f"world_size {world_size} needs a process group; launch with torchrun or facesdk train --nproc"
            )
        self.reporter = Reporter(self.out, is_main=rank == 0, barrier=barrier if world_size > 1 else None)
        self.state_dir, self.ckpt_dir = self.out / "state", self.out / "checkpoint"
        self.reporter.save(lambda: _recover_swapped_state(self.state_dir))
        if (self.state_dir / "state.json").is_file() and not resume:
            raise ConfigError(
                f"{self.out} holds a training state; pass --resume to continue it or choose another --out"
            )
        self.batch_meaning = saved_batch_meaning(self.state_dir) if resume else "global"
        self.batch_size = rank_batch_size(config.optim.batch_size, world_size, self.batch_meaning)
        """This rank's batch: ``optim.batch_size / world_size`` (``global``) or the whole of it."""

    def _build(self) -> None:
        cfg = self.config
        if cfg.data.train is None and self.world_size > 1:  # rank 0 writes the synthetic set, once
            self.reporter.save(lambda: generate_synthetic(self.out / "data", cfg.data.synth_options()))
        train_rows, val_rows = read_split_rows(cfg, self.out)  # label checks come before any model work
        self.setup = _runtime(cfg, self.reporter, self.local_rank)
        self.tasks = cfg.model.task_specs()
        self.heads = {t.name: cfg.model.head_spec() for t in self.tasks}
        model, preprocess, method = build_model(
            cfg.model.backbone_spec(), self.tasks, self.heads, cfg.method, crop=crop_policy_of(cfg)
        )
        self.model: MultiTaskModel = model.to(self.setup.device)
        self.preprocess, self.method_spec = preprocess, method
        if cfg.runtime.grad_checkpointing:
            timm_model = _timm_model(self.model.backbone)
            if not hasattr(timm_model, "set_grad_checkpointing"):
                raise ConfigError(
                    f"runtime.grad_checkpointing: {type(timm_model).__name__} cannot recompute its "
                    "activations (no set_grad_checkpointing); set runtime.grad_checkpointing=false"
                )
            timm_model.set_grad_checkpointing(True)
        self.train_set = FaceDataset(train_rows, self.tasks, preprocess, hflip=cfg.data.hflip, seed=cfg.seed)
        if cfg.model.heads_init == "zeroshot":  # before any DDP wrapping: every rank computes the same
            self._init_heads_from_zeroshot()
        self.val_set = FaceDataset(val_rows, self.tasks, preprocess)
        self.sampler = TaskBalancedSampler(
            self.train_set.labels.numpy(),
            [t.name for t in self.tasks],
            kind=cfg.data.sampler,
            task_shares=cfg.data.task_shares,
            num_samples=cfg.data.samples_per_epoch,
            seed=cfg.seed,
            row_weights=source_weights(cfg),
            rank=self.rank,
            world_size=self.world_size,
        )
        self.loss_fn = self._loss().to(self.setup.device)
        self.net = wrap_model(self.model, self.world_size, cfg.runtime.distributed)
        _seed_all(cfg.seed + self.rank)  # dropout and the like differ between ranks
        self._optimizer()

    def _init_heads_from_zeroshot(self) -> None:
        """``model.heads_init: zeroshot``: heads start from the compiled text embeddings."""
        from .zeroshot.heads_init import start_from_zeroshot

        model_cfg = self.config.model
        crops = torch.stack([self.train_set[i][0] for i in range(min(16, len(self.train_set)))])
        norm = start_from_zeroshot(
            self.model,
            str(model_cfg.zeroshot_checkpoint),
            self.tasks,
            model_cfg.zeroshot_feature_norm,
            crops.to(self.setup.device),
        )
        self.reporter.info("heads start from %s (feature norm %.4g)", model_cfg.zeroshot_checkpoint, norm)

    def _loss(self) -> MultiTaskLoss:
        weights = {}
        for j, task in enumerate(self.tasks):
            spec = self.config.optim.class_weights.get(task.name)
            if spec == "balanced":
                weights[task.name] = balanced_class_weights(self.train_set.labels[:, j], task.num_classes)
            elif spec is not None:
                weights[task.name] = torch.tensor([float(v) for v in spec])
        opt = self.config.optim
        return MultiTaskLoss(self.tasks, weights, opt.task_weights, opt.label_smoothing)

    def _optimizer(self) -> None:
        opt, impl = self.config.optim, get_method(self.method_spec.name)
        groups = impl.param_groups(self.model, self.method_spec.config, opt.lr, opt.weight_decay)
        self.optimizer = impl.optimizer(
            groups, self.method_spec.config, lr=opt.lr, weight_decay=opt.weight_decay
        )
        batches = math.ceil(len(self.sampler) / self.batch_size)
        self.steps_per_epoch = math.ceil(batches / opt.accumulate)
        self.total_steps = self.steps_per_epoch * opt.epochs
        factor = cosine_schedule(self.total_steps, opt.warmup_steps, opt.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    def run(self) -> dict[str, Any]:
        """Train (or resume) to the end; return the summary recorded in the checkpoint."""
        self._build()
        progress = {
            "epoch": 0,
            "batch": 0,
            "consumed": 0,
            "step": 0,
            "history": [],
            "best": None,
            "sums": {},
            "finished": False,
            "world_size": self.world_size,
            "batch_size_meaning": self.batch_meaning,
        }
        self._pending: dict[str, float] = {}  # this rank's loss sums since the last reduction
        if self.resume and (self.state_dir / "state.json").is_file():
            progress = load_state(self.state_dir, self.model, self.optimizer, self.scheduler)
            self._resumed(progress)
        elif self.resume:
            self.reporter.info("no saved state in %s; starting from the beginning", self.state_dir)
        counts = count_parameters(self.model)
        self.reporter.info(
            "%s: %d of %d parameters train (%.2f%%); %d steps",
            self.method_spec.name,
            counts["trainable"],
            counts["total"],
            100 * counts["trainable"] / counts["total"],
            self.total_steps,
        )
        while progress["epoch"] < self.config.optim.epochs and not progress["finished"]:
            self._train_epoch(progress)
            self._end_epoch(progress)
        progress["finished"] = True
        self._save_state(progress)
        return self._finish(progress, counts)

    def _resumed(self, progress: dict[str, Any]) -> None:
        """Log where a resumed run continues; say so when the world size changed."""
        saved = int(progress.get("world_size", 1))
        meaning = progress["batch_size_meaning"] = self.batch_meaning  # kept for the run's lifetime
        old_rank_batch = rank_batch_size(self.config.optim.batch_size, saved, meaning)
        progress.setdefault("consumed", progress["batch"] * old_rank_batch * saved)  # states before DDP
        self.reporter.info(
            "resumed at epoch %d, batch %d, step %d", progress["epoch"], progress["batch"], progress["step"]
        )
        if saved != self.world_size:
            per_rank = old_rank_batch * self.config.optim.accumulate
            message = world_size_change_message(
                self.state_dir, saved, self.world_size, progress, self.sampler.total, per_rank, meaning
            )
            self.reporter.warning("%s", message)
            progress["batch"] = 0  # a per-rank batch index means nothing under another world size
        progress["world_size"] = self.world_size
        if self.rank > 0:  # the state holds rank 0's RNG; the other ranks draw their own
            _seed_all(self.config.seed + 1000 * self.rank + progress["step"])

    def _train_epoch(self, progress: dict[str, Any]) -> None:
        opt, epoch = self.config.optim, progress["epoch"]
        self.net.train()
        self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch, consumed=progress["consumed"])
        loader = DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.config.data.num_workers,
        )
        start, consumed = progress["batch"], progress["consumed"]
        batches = start + math.ceil(len(self.sampler) / self.batch_size)
        bar = self.reporter.progress(enumerate(loader, start=start), batches - start, f"epoch {epoch + 1}")
        began, draws = time.perf_counter(), len(self.sampler) * self.world_size
        for b, (x, y) in bar:
            x, y = x.to(self.setup.device, non_blocking=True), y.to(self.setup.device)
            boundary = (b + 1) % opt.accumulate == 0 or b + 1 == batches
            with gradient_sync(self.net, boundary):
                with self._autocast():
                    logits = self.net(x)
                loss, parts = self.loss_fn(logits, y)
                (loss / opt.accumulate).backward()
            for name, value in {"loss": loss.detach(), **parts, "batches": 1}.items():
                self._pending[name] = self._pending.get(name, 0.0) + float(value)
            if boundary:
                self._step()
                progress["step"] += 1
                progress["batch"] = b + 1
                progress["consumed"] = consumed + (b + 1 - start) * self.batch_size * self.world_size
                if progress["step"] % self.config.runtime.save_every == 0 and b + 1 < batches:
                    self._save_state(progress)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(  # refresh=False: the bar's mininterval decides when to redraw
                    loss=f"{float(loss.detach()):.3f}",
                    lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                    refresh=False,
                )
        self.samples_per_s = draws / max(time.perf_counter() - began, 1e-9)  # all ranks' draws

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.setup.autocast:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _reduce_pending(self, progress: dict[str, Any]) -> None:
        """Add every rank's loss sums since the last call to ``progress["sums"]`` (a collective)."""
        keys = ["loss", *(t.name for t in self.tasks), "batches"]
        totals = all_reduce_sum([self._pending.get(k, 0.0) for k in keys])
        sums = progress["sums"]
        for key, value in zip(keys, totals.tolist(), strict=True):
            sums[key] = sums.get(key, 0) + (int(value) if key == "batches" else value)
        self._pending = {}

    def _save_state(self, progress: dict[str, Any]) -> None:
        self._reduce_pending(progress)
        self.reporter.save(
            lambda: save_state(self.state_dir, self.model, self.optimizer, self.scheduler, progress)
        )

    def _step(self) -> None:
        clip = self.config.optim.grad_clip
        if clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def evaluate(self) -> dict[str, dict[str, float]]:
        """Accuracy and balanced accuracy per task on the validation rows.

        Each rank predicts its shard of the rows (padded like the training draws, the padding
        unlabelled); the confusion counts are summed over the ranks, so every rank gets the
        metrics of the whole validation set, each row counted once.
        """
        self.net.eval()
        rows = shard(np.arange(len(self.val_set)), self.rank, self.world_size)
        loader = DataLoader(
            self.val_set,
            batch_size=2 * self.batch_size,
            sampler=rows.tolist(),
            num_workers=self.config.data.num_workers,
        )
        counts = [np.zeros((t.num_classes, t.num_classes), dtype=np.int64) for t in self.tasks]
        for x, y in loader:
            with self._autocast():
                logits = self.net(x.to(self.setup.device))
            for j, task in enumerate(self.tasks):
                labels, pred = y[:, j].numpy(), logits[task.name].argmax(1).cpu().numpy()
                keep = labels >= 0
                np.add.at(counts[j], (labels[keep], pred[keep]), 1)
        flat = all_reduce_sum(np.concatenate([c.ravel() for c in counts])).round().astype(np.int64)
        parts = np.split(flat, np.cumsum([c.size for c in counts])[:-1])
        pairs = zip(self.tasks, parts, counts, strict=True)
        return {t.name: confusion_metrics(f.reshape(c.shape)) for t, f, c in pairs}

    def _end_epoch(self, progress: dict[str, Any]) -> None:
        metrics = self.evaluate()
        self._reduce_pending(progress)
        sums, epoch = progress["sums"], progress["epoch"]
        n = max(1, sums.get("batches", 0))
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": progress["step"],
            "lr": self.scheduler.get_last_lr()[0],
        }
        row["train_loss"] = sums.get("loss", 0.0) / n
        row.update({f"train_loss_{t.name}": sums.get(t.name, 0.0) / n for t in self.tasks})
        for name, m in metrics.items():
            row[f"val_{name}_acc"], row[f"val_{name}_bacc"] = m["acc"], m["bacc"]
        score = float(np.nanmean([m["bacc"] for m in metrics.values()]))
        row["val_score"] = score
        progress["history"].append(row)
        self.reporter.info(
            "epoch %d: loss %.4f, %s; %.1f samples/s",
            epoch + 1,
            row["train_loss"],
            ", ".join(f"{k} acc {m['acc']:.3f} bacc {m['bacc']:.3f}" for k, m in metrics.items()),
            self.samples_per_s,
        )
        if progress["best"] is None or score > progress["best"]["score"]:
            progress["best"] = {
                "score": score,
                "epoch": epoch + 1,
                "step": progress["step"],
                "metrics": metrics,
            }
            training = {"best": metrics, "best_epoch": epoch + 1, "world_size": self.world_size}
            self.reporter.save(lambda: self._save_checkpoint(training))
        progress.update(epoch=epoch + 1, batch=0, consumed=0, sums={})
        self.reporter.write_history(progress["history"])
        self._save_state(progress)

    def _save_checkpoint(
        self,
        training: dict[str, Any],
        model: torch.nn.Module | None = None,
        temperatures: dict[str, float] | None = None,
    ) -> None:
        save_checkpoint(
            model or self.model,
            self.ckpt_dir,
            backbone=self.config.model.backbone_spec(),
            preprocess=self.preprocess,
            tasks=self.tasks,
            method=self.method_spec,
            heads=self.heads,
            training=training,
            temperatures=temperatures,
        )

    def _finish(self, progress: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
        history, best = progress["history"], progress["best"]
        final = {t.name: {k: history[-1][f"val_{t.name}_{k}"] for k in ("acc", "bacc")} for t in self.tasks}
        summary = {
            "epochs": self.config.optim.epochs,
            "steps": progress["step"],
            "best_epoch": best["epoch"],
            "selection": "mean validation balanced accuracy over tasks",
            "best": {k: {m: v[m] for m in ("acc", "bacc", "n")} for k, v in best["metrics"].items()},
            "final": final,
            "trainable_share": counts["trainable"] / counts["total"],
            "seed": self.config.seed,
            "world_size": self.world_size,
            "global_batch_size": self.world_size * self.batch_size * self.config.optim.accumulate,
            "batch_size_meaning": self.batch_meaning,
            "config": self.config.to_json(),
        }

        def rewrite() -> None:
            # The best model's temperatures, fitted on the validation split (main rank only).
            best_model = load_checkpoint(self.ckpt_dir).to(self.setup.device)
            temperatures, calibration = fit_on_dataset(
                best_model,
                self.val_set,
                self.tasks,
                self.setup.device,
                2 * self.config.optim.batch_size,
                self.config.data.num_workers,
            )
            summary["calibration"] = calibration
            for name, c in calibration.items():
                self.reporter.info(
                    "%s: temperature %.3f, validation ECE %.4f -> %.4f",
                    name,
                    c["temperature"],
                    c["ece_before"],
                    c["ece_after"],
                )
            self._save_checkpoint(summary, best_model.cpu(), temperatures)

        self.reporter.save(rewrite)
        self.reporter.info("best epoch %d; checkpoint in %s", best["epoch"], self.ckpt_dir)
        return summary


def final_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights (for comparing runs)."""
    return trainable_state(model)
