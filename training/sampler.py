"""A task-balanced, rank-sharded, epoch-seeded sampler.

Real mixes are lopsided (emotion labels are ~5% of the rows), so a uniform sampler barely
trains the rare task. In ``balanced`` mode each task gets a chosen share of the draws: a
row's draw weight is ``sum_t share_t / n_t`` over the tasks ``t`` it is labelled for
(``n_t`` = rows labelled for ``t``). In ``uniform`` mode every row appears exactly once per
epoch (a seeded permutation).

The draw list of an epoch depends only on ``(seed, epoch)``; rank ``r`` of ``w`` takes every
``w``-th entry starting at ``r``, so ranks never overlap. DDP needs every rank to run the same
number of batches, so when the list does not divide by ``w`` it is padded to a multiple of
``w`` (at most ``w - 1`` entries) with *padding markers*: index ``~i`` (``-1 - i``) stands for
row ``i`` with every label missing. The dataset returns its image, so the batch has the
shape the other ranks' batches have, but it adds nothing to the loss, the gradient or the
metrics. Every draw of the epoch is therefore trained on exactly once across the ranks:
nothing is dropped and nothing is counted twice.

``consumed`` counts the draws of the epoch already trained on, over all ranks. Because the
shares interleave, those are exactly the first ``consumed`` entries of the list, whatever
the world size was; a resumed run re-shards the rest over the ranks it has now, so it can
continue mid-epoch even after the number of processes changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler

from facesdk.errors import ConfigError
from facesdk.tasks import MISSING

__all__ = ["TaskBalancedSampler", "SAMPLER_KINDS", "is_padding", "shard"]

SAMPLER_KINDS = ("uniform", "balanced")


def is_padding(index: int) -> bool:
    """Whether a sampled index is a padding marker ``~row`` (see the module docstring)."""
    return index < 0


def shard(order: np.ndarray, rank: int, world_size: int, fill: np.ndarray | None = None) -> np.ndarray:
    """Rank ``rank``'s share of ``order``: every ``world_size``-th entry, starting at ``rank``.

    ``order`` is first padded to a multiple of ``world_size`` with padding markers ``~i`` of
    the first entries of ``fill`` (default: of ``order``), so all shares have one length and
    every real entry of ``order`` lands in exactly one share.
    """
    order = np.asarray(order, dtype=np.int64)
    pad = (-len(order)) % world_size
    if pad:
        source = np.asarray(fill if fill is not None and len(fill) else order, dtype=np.int64)
        order = np.concatenate([order, ~np.resize(source, pad)])
    return order[rank::world_size]


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
        self.epoch, self.consumed = 0, 0
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

    def set_epoch(self, epoch: int, consumed: int = 0) -> None:
        """Select the epoch's order and skip its first ``consumed`` draws (over all ranks)."""
        if not 0 <= int(consumed) <= self.total:
            raise ValueError(f"consumed must be within [0, {self.total}], got {consumed}")
        self.epoch, self.consumed = int(epoch), int(consumed)

    def epoch_indices(self) -> np.ndarray:
        """All draws of the current epoch, every rank's, in order (no padding)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.weights is None:
            return rng.permutation(self.total)
        return rng.choice(len(self.weights), size=self.total, replace=True, p=self.weights)

    def rank_indices(self) -> np.ndarray:
        """This rank's share of the draws not yet consumed, padding markers included."""
        order = self.epoch_indices()
        return shard(order[self.consumed :], self.rank, self.world_size, fill=order)

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_indices().tolist())

    def __len__(self) -> int:
        return -(-(self.total - self.consumed) // self.world_size)
