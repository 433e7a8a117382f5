"""Everything a run writes besides the model: log CSV, curves, progress bars, in one place.

:class:`Reporter` owns all rank-dependent side effects. Only the main rank (``is_main``)
writes files or shows progress; other ranks get the same calls as no-ops, so the training
loop never branches on the rank itself.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from facesdk.contract.manifest_io import atomic_write_bytes
from facesdk.progress import progress_bar

__all__ = ["Reporter", "accuracy_metrics", "confusion_metrics", "save_figure"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def save_figure(fig: Any, path: Path, dpi: int | None = None) -> None:
    """Tighten, render to PNG, close and write ``fig`` to ``path`` atomically (parents made)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **({} if dpi is None else {"dpi": dpi}))
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def accuracy_metrics(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy and balanced accuracy (mean recall over classes present) of labelled samples."""
    keep = labels >= 0
    pred, labels = pred[keep], labels[keep]
    if labels.size == 0:
        return {"acc": float("nan"), "bacc": float("nan"), "n": 0}
    recalls = [float((pred[labels == c] == c).mean()) for c in range(num_classes) if (labels == c).any()]
    return {"acc": float((pred == labels).mean()), "bacc": float(np.mean(recalls)), "n": int(labels.size)}


def confusion_metrics(confusion: np.ndarray) -> dict[str, float]:
    """:func:`accuracy_metrics` from a ``[true, predicted]`` count matrix (summed over ranks)."""
    confusion = np.asarray(confusion)
    n = int(confusion.sum())
    if n == 0:
        return {"acc": float("nan"), "bacc": float("nan"), "n": 0}
    support = confusion.sum(axis=1)
    recalls = [float(confusion[c, c] / support[c]) for c in range(len(support)) if support[c] > 0]
    return {"acc": float(np.trace(confusion) / n), "bacc": float(np.mean(recalls)), "n": n}


class Reporter:
    """Rank-zero side effects of a run: progress bars, log lines, CSV log, curves, saving.

    Args:
        out: The run's output folder.
        is_main: Whether this process writes (rank 0).
        barrier: Waits for every rank (distributed runs); :meth:`save` calls it before and
            after the write, so no rank runs ahead of a half-written checkpoint or state.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        is_main: bool = True,
        barrier: Callable[[], None] | None = None,
    ) -> None:
        self.out = Path(out)
        self.is_main = is_main
        self._barrier = barrier

    def progress(self, items: Iterable[T], total: int, desc: str) -> Iterable[T]:
        """Wrap ``items`` in a progress bar on the main rank (drawn only on a terminal)."""
        if not self.is_main:
            return items
        return progress_bar(
            items, total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True, mininterval=2.0
        )

    def info(self, message: str, *args: Any) -> None:
        if self.is_main:
            log.info(message, *args)

    def warning(self, message: str, *args: Any) -> None:
        if self.is_main:
            log.warning(message, *args)

    def save(self, action: Callable[[], Any]) -> None:
        """Run a writing action (checkpoint, state, data) on the main rank only, between barriers.

        Every rank must call it at the same point (it is a collective when distributed).
        """
        if self._barrier is not None:
            self._barrier()
        if self.is_main:
            action()
        if self._barrier is not None:
            self._barrier()

    def write_history(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite ``log.csv`` and ``curves.png`` from the epoch records so far."""
        if not self.is_main or not history:
            return
        keys: list[str] = []
        for row in history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_bytes(self.out / "log.csv", buf.getvalue().encode())
        self._plot(history)

    def _plot(self, history: Sequence[Mapping[str, Any]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in history]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
        for key in [k for k in history[-1] if k.startswith("train_loss")]:
            ax_loss.plot(epochs, [r.get(key) for r in history], marker="o", label=key)
        for key in [k for k in history[-1] if k.startswith("val_") and k.endswith("_bacc")]:
            ax_acc.plot(epochs, [r.get(key) for r in history], marker="o", label=key)
        ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss")
        ax_acc.set(xlabel="epoch", ylabel="balanced accuracy", title="validation", ylim=(0, 1))
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        save_figure(fig, self.out / "curves.png", dpi=90)
