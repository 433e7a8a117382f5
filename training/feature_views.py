"""Feature views for ``facesdk eval --pca`` / ``--tsne``: backbone features in 2-D, coloured by label.

For every checkpoint and dataset the report folder gets

* ``features/<model>/<dataset>_features.npy``: ``N x D`` float32 backbone features (one row per
  manifest row, in manifest order), for other tools;
* ``features/<model>/<dataset>_labels.npy``: ``N x T`` int64 labels, columns in the model's task
  order (listed in ``metrics.json``), ``-1`` where a label is missing;
* ``pca/<model>/<dataset>_<task>.png`` (``--pca``): the first two principal axes;
* ``tsne/<model>/<dataset>_<task>.png`` and ``tsne/<model>/<dataset>.npy`` (``--tsne``): a
  scikit-learn t-SNE embedding (``N x 2``; perplexity ``min(30, (N - 1) / 3)``, PCA init, seed 0).

Only checkpoints give backbone features; exports and per-task (MTLoRA) feature paths are skipped.
"""

from __future__ import annotations

import importlib
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.contract.manifest_io import atomic_write_bytes
from facesdk.errors import DependencyError
from facesdk.preprocess import Preprocess, to_input_tensor
from facesdk.tasks import MISSING, TaskSpec

from .datasets.manifest import ManifestRow
from .datasets.readers import dataset_title
from .reporting import save_figure

__all__ = ["backbone_features", "pca_2d", "plot_projection", "tsne_2d", "write_feature_views"]

log = logging.getLogger(__name__)


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``N x D`` features on their first two principal axes; also return their variance shares.

    scikit-learn's PCA; with fewer than two samples or dimensions the missing axes are zeros.
    """
    x = np.asarray(features, dtype=np.float64)
    points, shares = np.zeros((len(x), 2)), np.zeros(2)
    axes = min(2, *x.shape)
    if len(x) < 2 or not axes:
        return points, shares
    pca = _sklearn("decomposition", "--pca").PCA(n_components=axes, svd_solver="full")
    with np.errstate(invalid="ignore", divide="ignore"):  # identical rows: no variance to share
        points[:, :axes] = pca.fit_transform(x)
        shares[:axes] = np.nan_to_num(pca.explained_variance_ratio_)
    return points, shares


def _sklearn(module: str, option: str) -> Any:
    """``sklearn.<module>``, or a DependencyError that names the extra ``option`` needs."""
    try:
        return importlib.import_module(f"sklearn.{module}")
    except ImportError as exc:
        raise DependencyError(
            f"{option} needs scikit-learn; install it with: pip install 'facesdk[train]'"
        ) from exc


def tsne_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 2-D t-SNE embedding of ``N x D`` features (scikit-learn; ``N >= 4``)."""
    manifold = _sklearn("manifold", "--tsne")
    x = np.asarray(features, dtype=np.float32)
    perplexity = float(min(30.0, (len(x) - 1) / 3.0))
    return manifold.TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_projection(
    points: np.ndarray,
    labels: np.ndarray,
    task: TaskSpec,
    title: str,
    path: Path,
    axes: tuple[str, str] = ("", ""),
) -> None:
    """Scatter a 2-D projection, one colour per class of ``task`` (missing labels in grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    missing = labels == MISSING
    if missing.any():
        ax.scatter(points[missing, 0], points[missing, 1], s=4, c="lightgrey", label="missing")
    cmap = plt.get_cmap("tab10")
    for k, name in enumerate(task.labels):
        pick = labels == k
        if pick.any():
            ax.scatter(points[pick, 0], points[pick, 1], s=6, color=cmap(k % 10), label=name)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, markerscale=2, loc="best")
    save_figure(fig, path)


def backbone_features(
    checkpoint: Path, preprocess: Preprocess, rows: Sequence[ManifestRow], batch_size: int, device: str
) -> np.ndarray | None:
    """Backbone features of a checkpoint for every row's crop; ``None`` for per-task (MTLoRA) features."""
    import torch

    from .checkpoint_io import load_checkpoint_with_manifest
    from .eval_inputs import read_crops

    model, _ = load_checkpoint_with_manifest(checkpoint)
    model = model.to(device).eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = to_input_tensor(read_crops(rows[start : start + batch_size]), preprocess)
            feats = model.forward_features(torch.from_numpy(batch).to(device))
            if isinstance(feats, dict):
                log.warning("%s: the backbone gives one feature path per task; no feature views", checkpoint)
                return None
            parts.append(feats.float().reshape(len(batch), -1).cpu().numpy())
    return np.concatenate(parts) if parts else None


def _save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def write_feature_views(
    model: Any,
    preprocess: Preprocess,
    tasks: Sequence[TaskSpec],
    data: Mapping[str, tuple[Any, Sequence[ManifestRow]]],
    out: Path,
    batch_size: int,
    device: str,
    pca: bool = False,
    tsne: bool = False,
) -> dict[str, Any]:
    """Write the feature files and the asked-for views of one model (see the module docstring).

    Args:
        model: A ``ModelArg`` (its ``name`` and ``path``).
        data: ``{dataset: (DataArg, rows)}``.

    Returns:
        What was written, for ``metrics.json``: ``{"tasks": [...], "datasets": {name: {...}}}``.
    """
    from facesdk.contract.checkpoint import CHECKPOINT_MANIFEST

    if not (model.path / CHECKPOINT_MANIFEST).is_file():
        log.info("%s: feature views need backbone features, which only checkpoints give; skipped", model.name)
        return {}
    record: dict[str, Any] = {"tasks": [t.name for t in tasks], "datasets": {}}
    for name, (_, rows) in data.items():
        features = backbone_features(model.path, preprocess, rows, batch_size, device)
        if features is None or len(features) < 2:
            continue
        labels = np.array([[row.label(t.name) for t in tasks] for row in rows], dtype=np.int64)
        folder = out / "features" / model.name
        _save_npy(folder / f"{name}_features.npy", features.astype(np.float32))
        _save_npy(folder / f"{name}_labels.npy", labels)
        entry = record["datasets"][name] = {
            "features": str((folder / f"{name}_features.npy").relative_to(out)),
            "labels": str((folder / f"{name}_labels.npy").relative_to(out)),
            "shape": list(features.shape),
        }
        views: dict[str, tuple[np.ndarray, tuple[str, str]]] = {}
        if pca:
            points, shares = pca_2d(features)
            views["pca"] = (points, (f"PC1 ({100 * shares[0]:.1f}%)", f"PC2 ({100 * shares[1]:.1f}%)"))
        if tsne and len(features) >= 4:
            points = tsne_2d(features)
            _save_npy(out / "tsne" / model.name / f"{name}.npy", points.astype(np.float32))
            entry["tsne"] = str((out / "tsne" / model.name / f"{name}.npy").relative_to(out))
            views["tsne"] = (points, ("t-SNE 1", "t-SNE 2"))
        elif tsne:
            log.warning(
                "%s · %s: t-SNE needs at least 4 rows, got %d; skipped", model.name, name, len(features)
            )
        for kind, (points, axes) in views.items():
            for j, task in enumerate(tasks):
                if (labels[:, j] != MISSING).any():
                    title = f"{model.name} · {dataset_title(name)} · backbone {kind.upper()} by {task.name}"
                    path = out / kind / model.name / f"{name}_{task.name}.png"
                    plot_projection(points, labels[:, j], task, title, path, axes)
    return record
