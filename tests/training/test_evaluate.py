"""facesdk eval: metrics against hand computations, the results table, the CLI on a tiny export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.errors import ConfigError
from facesdk.tasks import AGE, EMOTION, GENDER, MISSING
from facesdk.training.datasets import ManifestRow, write_manifest
from facesdk.training.evaluate import (
    DataArg,
    ModelArg,
    TaskMetrics,
    confusion_matrix,
    evaluate_predictions,
    pca_2d,
    results_table,
)


def test_confusion_accuracy_and_balanced_accuracy_by_hand() -> None:
    truth = np.array([0, 0, 1, 1, 2, MISSING])
    pred = np.array([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(truth, pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    m = TaskMetrics("x", ("a", "b", "c"), cm)
    assert m.count == 5
    assert m.accuracy == pytest.approx(3 / 5)
    assert m.balanced_accuracy == pytest.approx((1 / 2 + 2 / 2 + 0 / 1) / 3)
    # A class absent from the labels does not count in the balanced accuracy.
    m2 = TaskMetrics("x", ("a", "b", "c"), confusion_matrix(np.array([0, 1]), np.array([2, 1]), 3))
    assert m2.balanced_accuracy == pytest.approx(0.5)


def test_evaluate_predictions_skips_tasks_without_labels() -> None:
    rows = [ManifestRow(Path("a"), 3, 0, MISSING), ManifestRow(Path("b"), MISSING, 1, MISSING)]
    preds = {"age": np.array([3, 4]), "gender": np.array([1, 1]), "emotion": np.array([0, 0])}
    out = evaluate_predictions(rows, preds, (AGE, GENDER, EMOTION))
    assert set(out) == {"age", "gender"}
    assert out["age"].count == 1 and out["age"].accuracy == 1.0
    assert out["gender"].accuracy == 0.5


def test_pca_2d_finds_the_main_axis() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=50)
    features = np.stack([t, 2 * t, 0.01 * rng.normal(size=50)], axis=1) + 5.0
    points, shares = pca_2d(features)
    assert points.shape == (50, 2)
    assert shares[0] > 0.99
    assert abs(np.corrcoef(points[:, 0], t)[0, 1]) > 0.999


def _metrics(task: str, correct: int, total: int) -> TaskMetrics:
    cm = np.zeros((2, 2), dtype=np.int64)
    cm[0, 0], cm[0, 1] = correct, total - correct
    return TaskMetrics(task, ("p", "q"), cm)


def test_results_table_layout_and_averages() -> None:
    results = {
        "ckpt": {
            "fairface": {"age": _metrics("age", 6, 10), "gender": _metrics("gender", 9, 10)},
            "utkface": {"age": _metrics("age", 8, 10)},
            "vggface2": {"age": _metrics("age", 1, 10)},
            "rafdb": {"emotion": _metrics("emotion", 3, 4)},
        },
        "int8": {"fairface": {"age": _metrics("age", 5, 10)}},
    }
    lines = results_table(results).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "Model", "FairFace age", "FairFace gender", "RAF-DB emotion", "UTKFace age", "UTKFace gender",
        "VggFace2 age", "VggFace2 gender", "Avg age", "Avg gender", "Avg emotion",
    ]  # fmt: skip
    ckpt = [c.strip() for c in lines[2].strip("|").split("|")]
    # Avg age = mean(60, 80): VggFace2's 10% is left out.
    assert ckpt == ["ckpt", "60.0", "90.0", "75.0", "80.0", "–", "10.0", "–", "70.0", "90.0", "75.0"]
    int8 = [c.strip() for c in lines[3].strip("|").split("|")]
    assert int8[1] == "50.0" and int8[8] == "50.0" and int8[9] == "–"


def test_argument_forms(tmp_path: Path) -> None:
    assert ModelArg.parse("runs/exp/export@int8") == ModelArg("export@int8", Path("runs/exp/export"), "int8")
    assert ModelArg.parse("q=runs/export@fp16") == ModelArg("q", Path("runs/export"), "fp16")
    assert ModelArg.parse("runs/ckpt") == ModelArg("ckpt", Path("runs/ckpt"), None)
    write_manifest(tmp_path / "m.csv", [])
    assert DataArg.parse(f"RAF-DB={tmp_path / 'm.csv'}").dataset == "rafdb"
    with pytest.raises(ConfigError, match="prepare.json"):
        DataArg.parse(str(tmp_path / "m.csv"))


def test_two_manifests_with_one_name_are_refused(tmp_path: Path) -> None:
    from facesdk.training.evaluate import evaluate

    write_manifest(tmp_path / "m.csv", [])
    data = [DataArg("fairface", tmp_path / "m.csv")] * 2
    with pytest.raises(ConfigError, match="same dataset"):
        evaluate([ModelArg("m", tmp_path)], data, tmp_path / "out")


def _fake_fairface(root: Path) -> Path:
    """Six random 32 x 32 crops and a manifest with age and gender labels."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        name = f"crops/{i}.png"
        (root / "crops").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        rows.append((name, i % AGE.num_classes, i % 2, MISSING))
    write_manifest(root / "test.csv", rows)
    return root / "test.csv"


def test_eval_cli_on_tiny_export_matches_hand_count(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from facesdk.testing import make_tiny_export

    export = tmp_path / "export"
    make_tiny_export(export, size=32, max_batch=4)
    manifest = _fake_fairface(tmp_path / "ff")
    out = tmp_path / "report"
    argv = ["--model", str(export), "--model", f"again={export}@fp32", "--data", f"fairface={manifest}"]
    from facesdk.cli import main as facesdk_main

    assert facesdk_main(["eval", *argv, "--out", str(out), "--batch-size", "4"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    with open(out / "predictions" / "export" / "fairface.csv") as fh:
        preds = list(csv.DictReader(fh))
    assert len(preds) == 6
    for task in ("age", "gender"):
        hits = sum(p[f"true_{task}"] == p[f"pred_{task}"] for p in preds)
        got = record["models"]["export"]["datasets"]["fairface"]["tasks"][task]
        assert got["accuracy"] == pytest.approx(hits / 6)
        assert sum(map(sum, got["confusion"])) == 6
        assert record["models"]["again"]["datasets"]["fairface"]["tasks"][task] == got
    assert "emotion" not in record["models"]["export"]["datasets"]["fairface"]["tasks"]
    row = next(line for line in (out / "results.md").read_text().splitlines() if line.startswith("| export "))
    age_hits = sum(p["true_age"] == p["pred_age"] for p in preds)
    assert row.split("|")[2].strip() == f"{100 * age_hits / 6:.1f}"
    assert (out / "confusion" / "export" / "fairface_age.png").stat().st_size > 0


def test_baseline_is_the_first_row_labelled_as_such(tmp_path: Path) -> None:
    """``--baseline``: a zero-shot model's row comes first, labelled; files keep its plain name."""
    pytest.importorskip("onnx")
    from facesdk.testing import make_tiny_export

    zeroshot, trained = tmp_path / "zs", tmp_path / "trained"
    make_tiny_export(zeroshot, size=32, max_batch=4, seed=1)
    make_tiny_export(trained, size=32, max_batch=4)
    manifest = json.loads((zeroshot / "export.json").read_text())
    manifest["source"] = {"method": "zeroshot"}  # what an export of 'facesdk zeroshot build' records
    (zeroshot / "export.json").write_text(json.dumps(manifest))
    data = _fake_fairface(tmp_path / "ff")
    out = tmp_path / "report"
    argv = ["eval", "--model", str(trained), "--baseline", str(zeroshot), "--data", f"fairface={data}"]
    from facesdk.cli import main as facesdk_main

    assert facesdk_main([*argv, "--out", str(out), "--batch-size", "4"]) == 0
    rows = [line for line in (out / "results.md").read_text().splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| zs (zero-shot baseline) |") and rows[2].startswith("| trained |")
    record = json.loads((out / "metrics.json").read_text())
    assert record["models"]["zs"]["baseline"] is True and record["models"]["trained"]["baseline"] is False
    assert (out / "predictions" / "zs" / "fairface.csv").is_file()
    # a baseline that is not zero-shot is still first, labelled plainly
    argv = ["eval", "--baseline", f"plain={trained}", "--data", f"fairface={data}", "--out", str(out)]
    assert facesdk_main(argv) == 0
    assert "| plain (baseline) |" in (out / "results.md").read_text()
