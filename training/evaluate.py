"""``facesdk eval``: accuracy, balanced accuracy and confusion matrices per model, dataset and task.

    facesdk eval --model CKPT_OR_EXPORT[@PRECISION] [--model NAME=PATH@int8 ...]
                 [--baseline [NAME=]ZEROSHOT_CKPT_OR_EXPORT]
                 --data [NAME=]MANIFEST_OR_PREPARED_DIR ... --out DIR [--batch-size N]
                 [--pca] [--tsne] [--calibrate]

A checkpoint directory runs on the torch backend; an export directory (or ``.onnx`` file)
on ONNX Runtime, with ``@fp32``/``@fp16``/``@int8`` choosing among the export's models, so a
checkpoint and its exports can be compared side by side. ``--baseline`` adds a model with no
training (``facesdk zeroshot build``) as the table's first row, labelled as the baseline.
Writes ``metrics.json`` (every number, confusion counts included), ``results.md`` (the table
laid out like the reference results), ``confusion/<model>/<dataset>_<task>.png`` and
``predictions/<model>/<dataset>.csv``, and per task the expected calibration error and
negative log-likelihood (``calibration.md``, ``reliability/<model>/<dataset>_<task>.png``; see
:mod:`facesdk.training.calibration_report`). ``--calibrate`` refits the temperatures on the
given manifests and writes ``calibrated/<model>/``; ``--pca`` and ``--tsne`` add feature views
(:mod:`facesdk.training.feature_views`).
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

import numpy as np

from facesdk.arguments import positive_int
from facesdk.contract.manifest_io import atomic_write_bytes, atomic_write_json
from facesdk.errors import ConfigError
from facesdk.outputs import StagedDir, check_output_dir, merge_into
from facesdk.preprocess import Preprocess
from facesdk.tasks import DEFAULT_TASKS, MISSING, TaskSpec

from .calibration_report import calibration_table, check_fit_rows, report_calibration
from .datasets.manifest import ManifestRow, read_manifest, read_prepare_info
from .datasets.readers import dataset_title
from .eval_inputs import (
    DataArg,
    ModelArg,
    baseline_label,
    model_temperatures,
    open_model,
    predict,
    predict_logits,
    read_crops,
)
from .feature_views import pca_2d, write_feature_views
from .reporting import save_figure

__all__ = [
    "TABLE_COLUMNS",
    "baseline_label",
    "confusion_matrix",
    "DataArg",
    "dataset_title",
    "evaluate_predictions",
    "main",
    "model_temperatures",
    "ModelArg",
    "open_model",
    "pca_2d",
    "predict",
    "predict_logits",
    "read_crops",
    "results_table",
    "TaskMetrics",
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
_title = dataset_title


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
    save_figure(fig, path)


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


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """What ``facesdk eval`` computes beyond the accuracy tables."""

    batch_size: int = 32
    device: str = "cpu"
    pca: bool = False
    tsne: bool = False
    calibrate: bool = False


def _evaluate_model(
    model: ModelArg, datasets: Mapping[str, tuple[DataArg, list[ManifestRow]]], out: Path, opts: ReportOptions
) -> tuple[dict[str, dict[str, TaskMetrics]], dict[str, Any]]:
    """One model on every dataset: metrics, and its ``metrics.json`` entry (without label/baseline)."""
    backend, preprocess, tasks = open_model(model, opts.device)
    results: dict[str, dict[str, TaskMetrics]] = {}
    entry: dict[str, Any] = {"path": str(model.path), "precision": model.precision, "datasets": {}}
    logits: dict[str, dict[str, np.ndarray]] = {}
    try:
        for name, (arg, rows) in datasets.items():
            _check_crops(arg.manifest, preprocess, model.name)
            logits[name] = predict_logits(backend, preprocess, rows, opts.batch_size, f"{model.name} {name}")
            preds = {task: values.argmax(axis=1) for task, values in logits[name].items()}
            metrics = evaluate_predictions(rows, preds, tasks)
            results[name] = metrics
            entry["datasets"][name] = {
                "manifest": str(arg.manifest),
                "tasks": {t: m.to_json() for t, m in metrics.items()},
            }
            _write_predictions(out / "predictions" / model.name / f"{name}.csv", rows, preds)
            for task, m in metrics.items():
                title = f"{model.name} · {dataset_title(name)} {task}"
                plot_confusion(m, title, out / "confusion" / model.name / f"{name}_{task}.png")
    finally:
        backend.close()
    temperatures = model_temperatures(model)
    rows_by_ds = {name: rows for name, (_, rows) in datasets.items()}
    calibration, calibrated = report_calibration(
        model, tasks, temperatures, logits, rows_by_ds, out, refit=opts.calibrate
    )
    entry["temperatures"] = temperatures
    for name, by_task in calibration.items():
        entry["datasets"][name]["calibration"] = by_task
    if calibrated is not None:
        entry["calibrated"] = calibrated
    if opts.pca or opts.tsne:
        views = write_feature_views(
            model, preprocess, tasks, datasets, out, opts.batch_size, opts.device, opts.pca, opts.tsne
        )
        if views:
            entry["features"] = views
    return results, entry


def evaluate(
    models: Sequence[ModelArg],
    data: Sequence[DataArg],
    out: Path,
    batch_size: int = 32,
    device: str = "cpu",
    pca: bool = False,
    baseline: ModelArg | None = None,
    tsne: bool = False,
    calibrate: bool = False,
) -> dict[str, dict[str, dict[str, TaskMetrics]]]:
    """Evaluate every model on every manifest; write the report files into ``out``.

    ``baseline`` (a zero-shot model) is evaluated first and labelled as the baseline row.
    Every model also gets ECE/NLL and reliability diagrams per task; with ``calibrate`` its
    temperatures are refitted on all the manifests and ``calibrated/<model>/`` written.

    With ``pca`` / ``tsne``, checkpoints also get ``pca/`` / ``tsne/<model>/<dataset>_<task>.png``:
    their backbone features in 2-D, coloured by label, and the features in ``features/`` as ``.npy``.
    """
    opts = ReportOptions(batch_size, device, pca, tsne, calibrate)
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
    if calibrate:  # refused before any model runs
        check_calibratable(models)
        check_fit_rows({name: rows for name, (_, rows) in datasets.items()}, [t.name for t in DEFAULT_TASKS])
    results: dict[str, dict[str, dict[str, TaskMetrics]]] = {}
    record: dict[str, Any] = {"models": {}}
    for model in models:
        results[model.name], entry = _evaluate_model(model, datasets, out, opts)
        entry["label"] = labels.get(model.name, model.name)
        entry["baseline"] = model.name in labels
        record["models"][model.name] = entry
    table = results_table(results, labels=labels)
    balanced = results_table(results, "balanced_accuracy", labels)
    calibration = calibration_table(record)
    record["table_markdown"] = table
    atomic_write_json(out / "metrics.json", record)
    text = f"## Accuracy (%)\n\n{table}\n## Balanced accuracy (%)\n\n{balanced}"
    text += "\nAverages leave out VggFace2, whose age labels are model-produced.\n"
    text += f"\n## Calibration\n\n{calibration}"
    atomic_write_bytes(out / "results.md", text.encode())
    atomic_write_bytes(out / "calibration.md", f"## Calibration\n\n{calibration}".encode())
    log.info("results:\n%s", table)
    return results


def check_calibratable(models: Sequence[ModelArg]) -> None:
    """Refuse ``--calibrate`` for a lone model file: its calibrated copy is a checkpoint or export directory."""
    for model in models:
        if not Path(model.path).is_dir():
            raise ConfigError(
                f"--calibrate writes a calibrated copy of a checkpoint or export directory; {model.path} is "
                "not one (a lone file, or missing). Give the export directory instead"
            )


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
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--device", default="cpu", help="torch device for checkpoints (cpu, cuda)")
    parser.add_argument(
        "--pca", action="store_true", help="checkpoints: PCA plots of backbone features by label"
    )
    parser.add_argument(
        "--tsne",
        action="store_true",
        help="checkpoints: t-SNE plots of backbone features by label (scikit-learn, in the [train] extra)",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="refit each task's temperature on the --data manifests and write the model with them "
        "to OUT/calibrated/NAME (the input is not changed)",
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "facesdk eval") -> int:
    """Entry point of ``facesdk eval``; returns the exit code."""
    args = build_parser(prog).parse_args(list(argv or []))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.model and not args.baseline:
        raise ConfigError("give at least one --model CHECKPOINT_OR_EXPORT (or a --baseline)")
    models = [ModelArg.parse(m) for m in args.model]
    baseline = ModelArg.parse(args.baseline) if args.baseline else None
    data = [DataArg.parse(d) for d in args.data]
    inputs = [m.path for m in [*models, *([baseline] if baseline else [])]] + [d.manifest for d in data]
    check_output_dir(args.out, inputs, reuse=True, manifests=("metrics.json",))
    # Staged: an interrupted or failed run leaves no partial report; a finished one replaces the
    # files of an earlier report (check_output_dir accepted the folder), and keeps anything else.
    staged = StagedDir(args.out, force=True)
    with staged as stage:
        evaluate(
            models,
            data,
            stage,
            args.batch_size,
            args.device,
            pca=args.pca,
            baseline=baseline,
            tsne=args.tsne,
            calibrate=args.calibrate,
        )
        staged.commit(swap=merge_into)
    sys.stdout.write((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    from facesdk.errors import run_guarded

    prog = "python -m facesdk.training.evaluate"
    sys.exit(run_guarded(prog, lambda: main(sys.argv[1:], prog=prog)))
