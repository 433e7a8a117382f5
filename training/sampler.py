"""A task-balanced, rank-sharded, epoch-seeded sampler.

Real mixes are lopsided (emotion labels are ~5% of the rows), so a uniform sampler barely
trains the rare task. In ``balanced`` mode each task gets a chosen share of the draws: a
row's draw weight is ``sum_t share_t / n_t`` over the tasks ``t`` it is labelled for
(``n_t`` = rows labelled for ``t``). In ``uniform`` mode every row appears exactly once per
epoch (a seeded permutation).

The index list of an epoch depends only on ``(seed, epoch)``; rank ``r`` of ``w`` takes
every ``w``-th entry starting at ``r``, so ranks never overlap (the list is padded with its
first entries to a multiple of ``w``, as ``DistributedSampler`` does). ``start`` skips the
first entries of the rank's share: a resumed run continues mid-epoch where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler

from facesdk.errors import ConfigError
from facesdk.tasks import MISSING

__all__ = ["TaskBalancedSampler", "SAMPLER_KINDS"]

SAMPLER_KINDS = ("uniform", "balanced")


class TaskBalancedSampler(Sampler[int]):
    """Indices of one epoch for one rank.

    Args:
        labels: ``N x T`` labels (``-1`` = missing).
        task_names: The ``T`` task names, for ``task_shares``.
        kind: ``"uniform"`` (each row once per epoch) or ``"balanced"`` (weighted draws with
            replacement).
        task_shares: Share of draws per task in balanced mode (default: equal).
        num_samples: Draws per epoch over all ranks in balanced mode (default ``N``).
        row_weights: Balanced mode: extra per-row factors (dataset mix weights), multiplied in.
        seed: Base seed; the epoch is mixed in.
        rank: This process's rank.
        world_size: Number of ranks.
    """

    def __init__(
        self,
        labels: np.ndarray,
        task_names: Sequence[str],
        kind: str = "balanced",
        task_shares: Mapping[str, float] | None = None,
        num_samples: int | None = None,
        row_weights: np.ndarray | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if kind not in SAMPLER_KINDS:
            raise ConfigError(f"sampler kind must be one of {SAMPLER_KINDS}, got {kind!r}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be within [0, world_size={world_size}), got {rank}")
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape[1] != len(task_names) or len(labels) == 0:
            raise ConfigError(f"labels must be a non-empty N x {len(task_names)} array, got {labels.shape}")
        if kind == "uniform" and num_samples:
            raise ConfigError(
                "num_samples applies to the balanced sampler only; uniform visits every row once"
            )
        self.kind, self.seed, self.rank, self.world_size = kind, int(seed), int(rank), int(world_size)
        self.total = int(num_samples or len(labels))
        self.epoch, self.start = 0, 0
        self.weights = (
            self._weights(labels, list(task_names), task_shares or {}) if kind == "balanced" else None
        )
        if row_weights is not None:
            row_weights = np.asarray(row_weights, dtype=np.float64)
            if self.weights is None or row_weights.shape != (len(labels),) or (row_weights < 0).any():
                raise ConfigError("row_weights need the balanced sampler and one weight >= 0 per row")
            self.weights = self.weights * row_weights
            self.weights /= self.weights.sum()

    @staticmethod
    def _weights(labels: np.ndarray, names: list[str], shares: Mapping[str, float]) -> np.ndarray:
        unknown = sorted(set(shares) - set(names))
        if unknown:
            raise ConfigError(f"task_shares names unknown task(s) {unknown}; tasks are {names}")
        share = np.array([float(shares.get(n, 1.0)) for n in names])
        if (share < 0).any() or share.sum() <= 0:
            raise ConfigError(f"task_shares must be >= 0 with a positive sum, got {dict(shares)}")
        has = labels != MISSING
        counts = has.sum(axis=0)
        per_task = np.where(counts > 0, share / share.sum() / np.maximum(counts, 1), 0.0)
        weights = (has * per_task).sum(axis=1)
        unlabelled = weights == 0
        if unlabelled.all():
            raise ConfigError("no row carries any label; check the manifests")
        # rows with no label at all still appear, at the smallest labelled weight
        weights[unlabelled] = weights[~unlabelled].min() if unlabelled.any() else 0.0
        return weights / weights.sum()

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and skip the first ``start`` indices of this rank."""
        self.epoch, self.start = int(epoch), int(start)

    def epoch_indices(self) -> np.ndarray:
        """All ranks' indices of the current epoch (padded to a multiple of the world size)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.weights) if self.weights is not None else self.total
        if self.weights is None:
            order = rng.permutation(n)
        else:
            order = rng.choice(n, size=self.total, replace=True, p=self.weights)
        pad = (-len(order)) % self.world_size
        return np.concatenate([order, order[:pad]]) if pad else order

    def rank_indices(self) -> np.ndarray:
        """This rank's share of the epoch, before skipping ``start``."""
        return self.epoch_indices()[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_indices()[self.start :].tolist())

    def __len__(self) -> int:
        n = self.total
        return -(-n // self.world_size) - self.start
