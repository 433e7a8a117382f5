"""``facesdk eval``: accuracy, balanced accuracy and confusion matrices per model, dataset and task.

    facesdk eval --model CKPT_OR_EXPORT[@PRECISION] [--model NAME=PATH@int8 ...]
                 [--baseline [NAME=]ZEROSHOT_CKPT_OR_EXPORT]
                 --data [NAME=]MANIFEST_OR_PREPARED_DIR ... --out DIR [--batch-size N] [--pca]

A checkpoint directory runs on the torch backend; an export directory (or ``.onnx`` file)
on ONNX Runtime, with ``@fp32``/``@fp16``/``@int8`` choosing among the export's models, so a
checkpoint and its exports can be compared side by side. ``--baseline`` adds a model with no
training (``facesdk zeroshot build``) as the table's first row, labelled as the baseline.
Writes ``metrics.json`` (every number, confusion counts included), ``results.md`` (the table
laid out like the reference results), ``confusion/<model>/<dataset>_<task>.png`` and
``predictions/<model>/<dataset>.csv``.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from facesdk.errors import ConfigError, MissingFileError
from facesdk.manifest_io import atomic_write_bytes, atomic_write_json
from facesdk.outputs import check_output_dir
from facesdk.preprocess import Preprocess, to_input_tensor
from facesdk.tasks import DEFAULT_TASKS, MISSING, TaskSpec

from .datasets.manifest import ManifestRow, read_manifest, read_prepare_info
from .datasets.readers import DATASETS, get_dataset

__all__ = [
    "TABLE_COLUMNS",
    "TaskMetrics",
    "confusion_matrix",
    "evaluate_predictions",
    "main",
    "pca_2d",
    "results_table",
]

log = logging.getLogger(__name__)

TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("fairface", "age"),
    ("fairface", "gender"),
    ("rafdb", "emotion"),
    ("utkface", "age"),
    ("utkface", "gender"),
    ("vggface2", "age"),
    ("vggface2", "gender"),
)
"""(dataset, task) columns of the reference results table, in its order."""

NOT_AVERAGED = frozenset({"vggface2"})
"""Datasets left out of the per-task averages (VggFace2's age labels are model-produced)."""

_OUR_TASKS = {t.name: t for t in DEFAULT_TASKS}


# ----------------------------------------------------------------------------------------- metrics
def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]``; rows whose true label is ``MISSING`` are ignored."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    keep = y_true != MISSING
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (y_true[keep], y_pred[keep]), 1)
    return out


@dataclass(frozen=True)
class TaskMetrics:
    """Metrics of one task on one dataset, from its confusion matrix.

    ``balanced_accuracy`` is the mean recall over classes that occur in the labels (as
    scikit-learn computes it).
    """

    task: str
    labels: tuple[str, ...]
    confusion: np.ndarray

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.count) if self.count else float("nan")

    @property
    def balanced_accuracy(self) -> float:
        support = self.confusion.sum(axis=1)
        present = support > 0
        if not present.any():
            return float("nan")
        return float(np.mean(np.diag(self.confusion)[present] / support[present]))

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "labels": list(self.labels),
            "confusion": self.confusion.tolist(),
        }


def evaluate_predictions(
    rows: Sequence[ManifestRow], predictions: Mapping[str, np.ndarray], tasks: Sequence[TaskSpec]
) -> dict[str, TaskMetrics]:
    """Metrics for every task that has predictions and at least one label in ``rows``."""
    out = {}
    for task in tasks:
        if task.name not in predictions:
            continue
        truth = np.array([row.label(task.name) for row in rows], dtype=np.int64)
        if (truth != MISSING).any():
            out[task.name] = TaskMetrics(
                task.name, task.labels, confusion_matrix(truth, predictions[task.name], task.num_classes)
            )
    return out


# ----------------------------------------------------------------------------------------- table
def _title(dataset: str) -> str:
    return DATASETS[dataset].title if dataset in DATASETS else dataset


def _cell(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}"


def results_table(
    results: Mapping[str, Mapping[str, Mapping[str, TaskMetrics]]],
    metric: str = "accuracy",
    labels: Mapping[str, str] | None = None,
) -> str:
    """Markdown table: rows = models, columns = the reference (dataset, task) pairs, then any other
    evaluated pairs, then per-task averages over the columns of datasets not in
    :data:`NOT_AVERAGED`. Values in percent.

    Args:
        results: ``{model: {dataset: {task: TaskMetrics}}}``.
        metric: ``"accuracy"`` or ``"balanced_accuracy"``.
        labels: Row labels of some models (e.g. the baseline's); others show their name.
    """
    present = {(d, t) for by_ds in results.values() for d, by_task in by_ds.items() for t in by_task}
    columns = list(TABLE_COLUMNS) + sorted(present - set(TABLE_COLUMNS))
    tasks = [t.name for t in DEFAULT_TASKS if any(c[1] == t.name for c in columns)]
    header = ["Model", *(f"{_title(d)} {t}" for d, t in columns), *(f"Avg {t}" for t in tasks)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, by_ds in results.items():
        values = {c: getattr(by_ds[c[0]][c[1]], metric) for c in columns if c[1] in by_ds.get(c[0], {})}
        averages = []
        for task in tasks:
            picked = [v for (d, t), v in values.items() if t == task and d not in NOT_AVERAGED]
            averages.append(float(np.mean(picked)) if picked else None)
        label = (labels or {}).get(model, model)
        cells = [label, *(_cell(values.get(c)) for c in columns), *(_cell(a) for a in averages)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_confusion(metrics: TaskMetrics, title: str, path: Path) -> None:
    """Save a confusion matrix (colour: row-normalised; text: counts) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = metrics.confusion
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(metrics.labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n), dpi=100)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), metrics.labels, rotation=45, ha="right")
    ax.set_yticks(range(n), metrics.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        f"{title}\nacc {100 * metrics.accuracy:.1f}%  bal {100 * metrics.balanced_accuracy:.1f}%", fontsize=9
    )
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rows[i, j] > 0.5 else "black",
            )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True)
class ModelArg:
    """``--model [NAME=]PATH[@PRECISION]``."""

    name: str
    path: Path
    precision: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelArg:
        name, sep, rest = text.partition("=")
        if not sep:
            name, rest = "", text
        path, at, precision = rest.rpartition("@")
        if not at:
            path, precision = rest, ""
        path_ = Path(path)
        if not name:
            # "runs/l14/checkpoint" is named "l14"; an export directory by its own name.
            base = path_.parent.name if path_.name == "checkpoint" and path_.parent.name else path_.name
            name = base if not precision else f"{base}@{precision}"
        return cls(name, path_, precision or None)


@dataclass(frozen=True, slots=True)
class DataArg:
    """``--data [NAME=]PATH``: a manifest CSV, or a prepared folder (its test.csv, else val.csv)."""

    dataset: str
    manifest: Path

    @classmethod
    def parse(cls, text: str) -> DataArg:
        name, sep, path = text.partition("=")
        if not sep or "/" in name:
            name, path = "", text
        manifest = Path(path)
        if manifest.is_dir():
            manifest = next(
                (manifest / f for f in ("test.csv", "val.csv") if (manifest / f).is_file()),
                manifest / "test.csv",
            )
        if not manifest.is_file():
            raise MissingFileError(f"--data {text}: {manifest} does not exist")
        if not name:
            info = read_prepare_info(manifest)
            if info is None or "dataset" not in info:
                raise ConfigError(
                    f"--data {text}: no prepare.json beside it names the dataset; use --data NAME={path}"
                )
            name = str(info["dataset"])
        try:
            name = get_dataset(name).name
        except ConfigError:
            name = name.lower()
        return cls(name, manifest)


def baseline_label(arg: ModelArg) -> str:
    """The table label of a baseline: ``NAME (zero-shot baseline)`` for a zero-shot model."""
    from facesdk.checkpoint import CHECKPOINT_MANIFEST, load_checkpoint_manifest
    from facesdk.model_loader import resolve_model

    if (arg.path / CHECKPOINT_MANIFEST).is_file():
        method = load_checkpoint_manifest(arg.path, verify=False).method.name
    else:
        resolved = resolve_model(arg.path, "onnxruntime", arg.precision, verify=False)
        method = resolved.manifest.source.get("method")
    if method != "zeroshot":
        log.warning("baseline %s was made with method %r, not by 'facesdk zeroshot build'", arg.path, method)
        return f"{arg.name} (baseline)"
    return f"{arg.name} (zero-shot baseline)"


def open_model(arg: ModelArg, device: str = "cpu") -> tuple[Any, Preprocess, tuple[TaskSpec, ...]]:
    """A backend for a checkpoint (torch) or an export / ``.onnx`` (ONNX Runtime)."""
    from facesdk.backends import create_backend
    from facesdk.checkpoint import CHECKPOINT_MANIFEST
    from facesdk.model_loader import resolve_model

    is_checkpoint = (arg.path / CHECKPOINT_MANIFEST).is_file()
    if is_checkpoint and arg.precision:
        raise ConfigError(
            f"--model {arg.path}@{arg.precision}: a checkpoint has no precisions; export it first"
        )
    resolved = resolve_model(arg.path, "torch" if is_checkpoint else "onnxruntime", arg.precision)
    for task in resolved.manifest.tasks:
        ours = _OUR_TASKS.get(task.name)
        if ours is not None and ours.labels != task.labels:
            raise ConfigError(
                f"{arg.path}: task {task.name!r} has labels {list(task.labels)}; manifests use {list(ours.labels)}"
            )
    opts = {"device": device} if is_checkpoint else {}
    backend = create_backend(resolved.backend, resolved.manifest, resolved.path, **opts)
    return backend, resolved.manifest.preprocess, resolved.manifest.tasks


def _read_crops(rows: Sequence[ManifestRow]) -> list[np.ndarray]:
    crops = []
    for row in rows:
        image = cv2.imread(str(row.path), cv2.IMREAD_COLOR)
        if image is None:
            raise MissingFileError(f"crop {row.path} is missing or unreadable; re-run 'facesdk data prepare'")
        crops.append(image)
    return crops


def predict(
    backend: Any, preprocess: Preprocess, rows: Sequence[ManifestRow], batch_size: int, desc: str
) -> dict[str, np.ndarray]:
    """Class predictions (argmax of logits) per task for every row's crop."""
    from facesdk.backends import run_batched

    parts: dict[str, list[np.ndarray]] = {}
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch"):
        crops = _read_crops(rows[start : start + batch_size])
        for name, logits in run_batched(backend, to_input_tensor(crops, preprocess)).items():
            parts.setdefault(name, []).append(np.asarray(logits).argmax(axis=1))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _check_crops(manifest: Path, preprocess: Preprocess, model: str) -> None:
    info = read_prepare_info(manifest) or {}
    made = info.get("preprocess", {}).get("crop")
    if made is not None and made != preprocess.crop.to_json():
        log.warning(
            "%s: crops of %s were made with %s but the model expects %s; numbers will not match serving",
            model,
            manifest,
            made,
            preprocess.crop.to_json(),
        )


def _write_predictions(path: Path, rows: Sequence[ManifestRow], preds: Mapping[str, np.ndarray]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = sorted(preds)
    writer.writerow(["path", *(f"true_{n}" for n in names), *(f"pred_{n}" for n in names)])
    for i, row in enumerate(rows):
        writer.writerow([str(row.path), *(row.label(n) for n in names), *(int(preds[n][i]) for n in names)])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue().encode())


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``N x D`` features on their first two principal axes; also return their variance shares."""
    centered = np.asarray(features, dtype=np.float64) - np.mean(features, axis=0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    var = s**2
    explained = var / var.sum() if var.sum() > 0 else var
    points = np.zeros((len(centered), 2))
    points[:, : min(2, vt.shape[0])] = centered @ vt[:2].T
    shares = np.zeros(2)
    shares[: min(2, len(explained))] = explained[:2]
    return points, shares


def plot_pca(
    points: np.ndarray, shares: np.ndarray, labels: np.ndarray, task: TaskSpec, title: str, path: Path
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
    ax.set_xlabel(f"PC1 ({100 * shares[0]:.1f}%)")
    ax.set_ylabel(f"PC2 ({100 * shares[1]:.1f}%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def backbone_features(
    checkpoint: Path, preprocess: Preprocess, rows: Sequence[ManifestRow], batch_size: int, device: str
) -> np.ndarray | None:
    """Backbone features of a checkpoint for every row's crop; ``None`` for per-task (MTLoRA) features."""
    import torch

    from .checkpoint_io import load_checkpoint_with_manifest

    model, _ = load_checkpoint_with_manifest(checkpoint)
    model = model.to(device).eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = to_input_tensor(_read_crops(rows[start : start + batch_size]), preprocess)
            feats = model.forward_features(torch.from_numpy(batch).to(device))
            if isinstance(feats, dict):
                log.warning("%s: the backbone gives one feature path per task; no PCA plot", checkpoint)
                return None
            parts.append(feats.float().reshape(len(batch), -1).cpu().numpy())
    return np.concatenate(parts) if parts else None


def _write_pca(
    model: ModelArg,
    preprocess: Preprocess,
    tasks: Sequence[TaskSpec],
    data: Mapping[str, Any],
    out: Path,
    batch_size: int,
    device: str,
) -> None:
    from facesdk.checkpoint import CHECKPOINT_MANIFEST

    if not (model.path / CHECKPOINT_MANIFEST).is_file():
        log.info("%s: PCA needs backbone features, which only checkpoints give; skipped", model.name)
        return
    for name, (_, rows) in data.items():
        features = backbone_features(model.path, preprocess, rows, batch_size, device)
        if features is None or len(features) < 2:
            continue
        points, shares = pca_2d(features)
        for task in tasks:
            labels = np.array([row.label(task.name) for row in rows])
            if (labels != MISSING).any():
                title = f"{model.name} · {_title(name)} · backbone PCA by {task.name}"
                plot_pca(
                    points, shares, labels, task, title, out / "pca" / model.name / f"{name}_{task.name}.png"
                )


def evaluate(
    models: Sequence[ModelArg],
    data: Sequence[DataArg],
    out: Path,
    batch_size: int = 32,
    device: str = "cpu",
    pca: bool = False,
    baseline: ModelArg | None = None,
) -> dict[str, dict[str, dict[str, TaskMetrics]]]:
    """Evaluate every model on every manifest; write the report files into ``out``.

    ``baseline`` (a zero-shot model) is evaluated first and labelled as the baseline row.

    With ``pca``, checkpoints also get ``pca/<model>/<dataset>_<task>.png``: their backbone
    features projected on the first two principal axes, coloured by label.
    """
    labels = {baseline.name: baseline_label(baseline)} if baseline is not None else {}
    models = [baseline, *models] if baseline is not None else list(models)
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must differ, got {names}; name them with --model NAME=PATH")
    datasets = {d.dataset: (d, read_manifest(d.manifest)) for d in data}
    if len(datasets) != len(data):
        raise ConfigError(
            f"several --data entries name the same dataset ({[d.dataset for d in data]}); "
            "give each its own name with --data NAME=PATH"
        )
    results: dict[str, dict[str, dict[str, TaskMetrics]]] = {}
    record: dict[str, Any] = {"models": {}}
    for model in models:
        backend, preprocess, tasks = open_model(model, device)
        try:
            results[model.name] = {}
            entry = record["models"][model.name] = {
                "path": str(model.path),
                "precision": model.precision,
                "label": labels.get(model.name, model.name),
                "baseline": model.name in labels,
                "datasets": {},
            }
            for name, (arg, rows) in datasets.items():
                _check_crops(arg.manifest, preprocess, model.name)
                preds = predict(backend, preprocess, rows, batch_size, f"{model.name} {name}")
                metrics = evaluate_predictions(rows, preds, tasks)
                results[model.name][name] = metrics
                entry["datasets"][name] = {
                    "manifest": str(arg.manifest),
                    "tasks": {t: m.to_json() for t, m in metrics.items()},
                }
                _write_predictions(out / "predictions" / model.name / f"{name}.csv", rows, preds)
                for task, m in metrics.items():
                    plot_confusion(
                        m,
                        f"{model.name} · {_title(name)} {task}",
                        out / "confusion" / model.name / f"{name}_{task}.png",
                    )
        finally:
            backend.close()
        if pca:
            _write_pca(model, preprocess, tasks, datasets, out, batch_size, device)
    table = results_table(results, labels=labels)
    balanced = results_table(results, "balanced_accuracy", labels)
    record["table_markdown"] = table
    atomic_write_json(out / "metrics.json", record)
    text = f"## Accuracy (%)\n\n{table}\n## Balanced accuracy (%)\n\n{balanced}"
    text += "\nAverages leave out VggFace2, whose age labels are model-produced.\n"
    atomic_write_bytes(out / "results.md", text.encode())
    log.info("results:\n%s", table)
    return results


def build_parser(prog: str = "facesdk eval") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Evaluate checkpoints and exports on prepared manifests."
    )
    parser.add_argument(
        "--model", action="append", default=[], help="[NAME=]CHECKPOINT_OR_EXPORT[@fp32|fp16|int8]"
    )
    parser.add_argument(
        "--baseline",
        help="[NAME=]CHECKPOINT_OR_EXPORT[@PRECISION] of a zero-shot model (facesdk zeroshot build): "
        "the table's first row, labelled as the baseline",
    )
    parser.add_argument(
        "--data", action="append", required=True, help="[NAME=]MANIFEST.csv or prepared folder"
    )
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="torch device for checkpoints (cpu, cuda)")
    parser.add_argument(
        "--pca", action="store_true", help="checkpoints: PCA plots of backbone features by label"
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "facesdk eval") -> int:
    """Entry point of ``facesdk eval``; returns the exit code."""
    args = build_parser(prog).parse_args(list(argv or []))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not args.model and not args.baseline:
        raise ConfigError("give at least one --model CHECKPOINT_OR_EXPORT (or a --baseline)")
    models = [ModelArg.parse(m) for m in args.model]
    baseline = ModelArg.parse(args.baseline) if args.baseline else None
    data = [DataArg.parse(d) for d in args.data]
    inputs = [m.path for m in [*models, *([baseline] if baseline else [])]] + [d.manifest for d in data]
    check_output_dir(args.out, inputs, reuse=True, manifests=("metrics.json",))
    evaluate(models, data, args.out, args.batch_size, args.device, pca=args.pca, baseline=baseline)
    sys.stdout.write((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m facesdk.training.evaluate"))
