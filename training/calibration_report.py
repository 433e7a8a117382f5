"""The calibration part of ``facesdk eval``: ECE/NLL tables, reliability diagrams, calibrated copies.

Per model, dataset and task the report compares the probabilities at three temperatures:

* ``raw``: plain softmax (``T = 1``);
* ``model``: the temperature the checkpoint or export carries (what the SDK serves);
* ``refit`` (``--calibrate``): a temperature fitted on the labelled rows of every ``--data``
  manifest together (:func:`facesdk.training.temperature.fit_temperature`).

``--calibrate`` also writes ``calibrated/<model>/``: a copy of the checkpoint or export directory
whose manifest carries the refitted temperatures. The weights and engines are byte-identical; each
ONNX file of an export gets the new temperatures in its facesdk metadata too (so the lone file
serves them), with a new digest, and the manifest records the new hashes. The inputs are never
changed.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from facesdk.errors import ConfigError
from facesdk.outputs import StagedDir
from facesdk.tasks import MISSING, TaskSpec

from .datasets.readers import dataset_title
from .reporting import save_figure
from .temperature import ECE_BINS, Calibration, calibration_at, fit_temperatures

__all__ = [
    "CALIBRATED_DIR",
    "calibration_table",
    "plot_reliability",
    "report_calibration",
    "write_calibrated",
    "check_fit_rows",
    "MIN_FIT_ROWS",
]

CALIBRATED_DIR = "calibrated"

MIN_FIT_ROWS = 50
"""Labelled rows a task needs before ``--calibrate`` fits its temperature (fewer are refused: one or
two rows drive the fit to an end of the range, which says nothing about the model)."""
"""Report sub-folder that receives ``--calibrate``'s checkpoint or export copies."""

_COLOURS = {"raw": "tab:red", "model": "tab:blue", "refit": "tab:green"}


def plot_reliability(curves: Mapping[str, Calibration], title: str, path: Path) -> None:
    """A reliability diagram: per-bin accuracy against confidence, one curve per temperature.

    Bars show the share of rows in each bin (right axis); the diagonal is perfect calibration.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    first = next(iter(curves.values()))
    edges = first.bins.edges
    share = ax.twinx()
    for kind, cal in curves.items():
        full = cal.bins.counts > 0
        label = f"{kind} T={cal.temperature:.2f}: ECE {100 * cal.ece:.1f}%, NLL {cal.nll:.3f}"
        colour = _COLOURS.get(kind, "black")
        ax.plot(
            cal.bins.confidence[full], cal.bins.accuracy[full], marker="o", ms=3, color=colour, label=label
        )
        total = max(int(cal.bins.counts.sum()), 1)
        share.stairs(cal.bins.counts / total, edges, color=colour, alpha=0.25, fill=True)
    share.set_ylim(0, 1)
    share.set_ylabel("share of rows per bin", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"confidence ({len(edges) - 1} bins)")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    save_figure(fig, path)


def _cell(cal: Mapping[str, Any] | None, key: str, percent: bool) -> str:
    if cal is None or cal[key] is None or cal[key] != cal[key]:
        return "–"
    return f"{100 * cal[key]:.1f}" if percent else f"{cal[key]:.3f}"


def calibration_table(record: Mapping[str, Any]) -> str:
    """Markdown table of ECE (%) and NLL per model, dataset and task from ``metrics.json``'s record."""
    header = ["Model", "Dataset", "Task", "n", "T model", "T refit"]
    header += ["ECE raw", "ECE model", "ECE refit", "NLL raw", "NLL model", "NLL refit"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, entry in record["models"].items():
        for dataset, by_ds in entry["datasets"].items():
            for task, cal in by_ds.get("calibration", {}).items():
                raw, mine, refit = cal["raw"], cal["model"], cal.get("refit")
                cells = [model, dataset, task, str(raw["count"]), f"{mine['temperature']:.3f}"]
                cells.append("–" if refit is None else f"{refit['temperature']:.3f}")
                cells += [_cell(c, "ece", True) for c in (raw, mine, refit)]
                cells += [_cell(c, "nll", False) for c in (raw, mine, refit)]
                lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\nECE: expected calibration error over {ECE_BINS} equal-width confidence bins, in %. "
        "raw: T = 1; model: the temperature the model carries; refit: fitted by --calibrate.\n"
    )
    return "\n".join(lines) + "\n" + note


def _check_destination(source: Path, dest: Path) -> None:
    src, dst = source.resolve(), dest.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise ConfigError(
            f"--calibrate would write {dest}, which overlaps its input {source}; choose another --out"
        )
    if dest.exists() and not any((dest / n).is_file() for n in ("checkpoint.json", "export.json")):
        raise ConfigError(
            f"{dest} exists and is not a checkpoint or export this tool wrote; move it away or choose another --out"
        )


def write_calibrated(source: Path, temperatures: Mapping[str, float], dest: Path) -> Path:
    """Copy a checkpoint or export directory to ``dest`` with ``temperatures`` in its manifest.

    The copy is built beside ``dest`` and renamed into place; a previous copy there (one with a
    manifest) is replaced. ``source`` is only read.

    Raises:
        ConfigError: ``source`` is a lone model file, or ``dest`` overlaps it or holds something else.
    """
    from facesdk.contract.checkpoint import CHECKPOINT_MANIFEST, load_checkpoint_manifest
    from facesdk.contract.export_manifest import EXPORT_MANIFEST, load_export_manifest

    if not source.is_dir():
        raise ConfigError(
            f"--calibrate writes a calibrated copy of a checkpoint or export directory; {source} is a "
            "lone file. Give the export directory instead"
        )
    _check_destination(source, dest)
    is_checkpoint = (source / CHECKPOINT_MANIFEST).is_file()
    manifest: Any = load_checkpoint_manifest(source) if is_checkpoint else load_export_manifest(source)
    staged = StagedDir(dest, force=True)  # an earlier copy (checked above) is replaced
    with staged as stage:
        manifest_name = CHECKPOINT_MANIFEST if is_checkpoint else EXPORT_MANIFEST
        shutil.copytree(source, stage, ignore=shutil.ignore_patterns(manifest_name), dirs_exist_ok=True)
        manifest = replace(manifest, temperatures=dict(temperatures))
        if not is_checkpoint:
            manifest = _restamp_onnx(stage, manifest)
        manifest.write(stage)
        staged.commit()
    return dest


def _restamp_onnx(stage: Path, manifest: Any) -> Any:
    """Write ``manifest``'s metadata (its temperatures included) into every ONNX file, as the export
    does; return the manifest with the files' new hashes."""
    from facesdk.contract.integrity import set_onnx_metadata
    from facesdk.contract.manifest_io import FileEntry

    models = dict(manifest.models)
    for key, entry in manifest.models.items():
        if entry.format == "onnx":
            set_onnx_metadata(stage / entry.file.path, manifest.onnx_metadata())
            models[key] = replace(entry, file=FileEntry.of(stage, entry.file.path))
    return replace(manifest, models=models)


def check_fit_rows(rows: Mapping[str, Sequence[Any]], tasks: Sequence[str]) -> dict[str, int]:
    """Refuse a ``--calibrate`` fit from fewer than :data:`MIN_FIT_ROWS` labelled rows of a task.

    A task with no labelled row at all is not fitted (it keeps the model's temperature).

    Args:
        rows: ``{dataset: manifest rows}`` of every ``--data``.
        tasks: The task names to count.

    Returns:
        ``{task: labelled rows}`` over all datasets.

    Raises:
        ConfigError: A task has 1 to ``MIN_FIT_ROWS - 1`` labelled rows; the message gives every count.
    """
    counts = {t: int(sum((_labels(r, t) != MISSING).sum() for r in rows.values())) for t in tasks}
    few = {t: n for t, n in counts.items() if 0 < n < MIN_FIT_ROWS}
    if few:
        have = ", ".join(f"{n} for {t}" for t, n in counts.items())
        raise ConfigError(
            f"--calibrate fits each task's temperature from at least {MIN_FIT_ROWS} labelled rows; the "
            f"--data manifests hold {have}. Add labelled rows (or leave a task's labels empty to keep its "
            "temperature), or drop --calibrate"
        )
    return counts


def _labels(rows: Sequence[Any], task: str) -> np.ndarray:
    return np.array([row.label(task) for row in rows], dtype=np.int64)


def report_calibration(
    model: Any,
    tasks: Sequence[TaskSpec],
    temperatures: Mapping[str, float],
    logits: Mapping[str, Mapping[str, np.ndarray]],
    rows: Mapping[str, Sequence[Any]],
    out: Path,
    refit: bool = False,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """ECE/NLL records and reliability diagrams of one model on every dataset; the refit with ``refit``.

    Args:
        model: A ``ModelArg`` (``name``, ``path``).
        temperatures: The model's own temperatures (missing tasks: 1.0).
        logits: ``{dataset: {task: N x C raw logits}}``.
        rows: ``{dataset: manifest rows}`` (the labels).
        out: The report folder: diagrams go to ``reliability/<model>/<dataset>_<task>.png``.
        refit: Fit new temperatures on all datasets' labelled rows together and write
            ``calibrated/<model>/`` with them.

    Returns:
        ``{dataset: {task: {"raw": ..., "model": ..., "refit": ...}}}`` and, with ``refit``, the
        record of the calibrated copy (``{"temperatures", "fitted_on", "path"}``).
    """
    fitted: dict[str, float] = {}
    calibrated = None
    if refit:
        pooled = {
            t.name: (
                np.concatenate([logits[d][t.name] for d in logits]),
                np.concatenate([_labels(rows[d], t.name) for d in logits]),
            )
            for t in tasks
        }
        fitted = fit_temperatures({k: v[0] for k, v in pooled.items()}, {k: v[1] for k, v in pooled.items()})
        # A task without labels keeps the temperature the model had.
        new = {**{k: v for k, v in temperatures.items() if k not in fitted}, **fitted}
        path = write_calibrated(model.path, new, out / CALIBRATED_DIR / model.name)
        calibrated = {"temperatures": new, "fitted_on": list(logits), "path": str(path.relative_to(out))}
    record: dict[str, dict[str, Any]] = {}
    for dataset, by_task in logits.items():
        record[dataset] = {}
        for task in tasks:
            labels = _labels(rows[dataset], task.name)
            if not (labels != MISSING).any():
                continue
            curves = {
                "raw": calibration_at(by_task[task.name], labels, 1.0),
                "model": calibration_at(by_task[task.name], labels, temperatures.get(task.name, 1.0)),
            }
            if task.name in fitted:
                curves["refit"] = calibration_at(by_task[task.name], labels, fitted[task.name])
            record[dataset][task.name] = {k: c.to_json() for k, c in curves.items()}
            title = f"{model.name} · {dataset_title(dataset)} {task.name} · reliability"
            shown = {k: c for k, c in curves.items() if k != "model" or c.temperature != 1.0}  # model == raw
            plot_reliability(shown, title, out / "reliability" / model.name / f"{dataset}_{task.name}.png")
    return record, calibrated
