"""facesdk eval: ECE/NLL before and after, reliability diagrams, --calibrate on an over-confident export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.contract.export_manifest import load_export_manifest, manifest_from_onnx_metadata
from facesdk.contract.integrity import check_onnx_digest, read_onnx_metadata
from facesdk.contract.manifest_io import FileEntry
from facesdk.tasks import DEFAULT_TASKS, MISSING
from facesdk.training.datasets import write_manifest
from facesdk.training.temperature import log_softmax

pytest.importorskip("onnx")
SCALE = 5.0  # the over-confident export's logits are the calibrated model's times this


def _scale_export(export: Path, factor: float) -> None:
    """Multiply every head's weights and bias of a tiny export by ``factor`` (logits scale with it)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(export / "model.onnx"))
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), init.name))
    onnx.save(model, str(export / "model.onnx"))
    data = json.loads((export / "export.json").read_text())
    data["models"]["onnx-fp32"]["file"] = FileEntry.of(export, "model.onnx").to_json()
    (export / "export.json").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def overconfident(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An export whose labels follow softmax(logits / 5): right often, not always, and sure of itself."""
    from facesdk.backends import create_backend
    from facesdk.contract.export_manifest import load_export_manifest
    from facesdk.preprocess import to_input_tensor
    from facesdk.testing import make_tiny_export

    root = tmp_path_factory.mktemp("overconfident")
    export = root / "export"
    make_tiny_export(export, size=32, max_batch=64)
    rng = np.random.default_rng(0)
    crops = [np.full((32, 32, 3), rng.integers(0, 256, 3), dtype=np.uint8) for _ in range(800)]
    manifest = load_export_manifest(export)
    backend = create_backend("onnxruntime", manifest, export / "model.onnx")
    logits = {
        k: np.concatenate(
            [
                backend.run(to_input_tensor(crops[i : i + 64], manifest.preprocess))[k]
                for i in range(0, len(crops), 64)
            ]
        )
        for k in ("age", "gender", "emotion")
    }
    backend.close()
    labels = {}
    for task, values in logits.items():
        p = np.exp(log_softmax(values))
        labels[task] = np.array([rng.choice(len(row), p=row) for row in p])
    labels["emotion"][::4] = MISSING
    (root / "crops").mkdir()
    rows = []
    for i, crop in enumerate(crops):
        cv2.imwrite(str(root / "crops" / f"{i}.png"), crop)
        rows.append((f"crops/{i}.png", labels["age"][i], labels["gender"][i], labels["emotion"][i]))
    write_manifest(root / "test.csv", rows)
    _scale_export(export, SCALE)
    return export, root / "test.csv"


def _eval(*argv: str) -> dict:
    from facesdk.cli import main as facesdk_main

    out = Path(argv[argv.index("--out") + 1])
    assert facesdk_main(["eval", *argv, "--batch-size", "64"]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_calibrate_lowers_ece_keeps_accuracy_and_never_touches_the_input(
    overconfident: tuple[Path, Path], tmp_path: Path
) -> None:
    export, data = overconfident
    before = {p.name: p.read_bytes() for p in export.iterdir()}
    out = tmp_path / "report"
    record = _eval(
        "--model", f"over={export}", "--data", f"fairface={data}", "--out", str(out), "--calibrate"
    )
    entry = record["models"]["over"]
    assert entry["temperatures"] == {}
    calibration = entry["datasets"]["fairface"]["calibration"]
    assert set(calibration) == {t.name for t in DEFAULT_TASKS}
    for task, cal in calibration.items():
        raw, refit = cal["raw"], cal["refit"]
        assert cal["model"] == raw  # the export carried no temperature: T = 1
        assert 3.5 < refit["temperature"] < 7.0, (task, refit["temperature"])
        assert refit["ece"] < 0.5 * raw["ece"] and raw["ece"] > 0.05, (task, raw["ece"], refit["ece"])
        assert refit["nll"] < raw["nll"]
        assert raw["count"] == (600 if task == "emotion" else 800)
        assert sum(refit["reliability"]["counts"]) == refit["count"]
        image = cv2.imread(str(out / "reliability" / "over" / f"fairface_{task}.png"))
        assert image is not None and image.shape[0] > 100
    assert "| over | fairface | age |" in (out / "calibration.md").read_text()
    assert "## Calibration" in (out / "results.md").read_text()

    # The calibrated copy: the refitted temperatures in its manifest and in the ONNX file's own
    # metadata (a lone model.onnx serves them too), whose digest and manifest hash still verify.
    copy = out / entry["calibrated"]["path"]
    assert copy == out / "calibrated" / "over"
    fitted = {t: c["refit"]["temperature"] for t, c in calibration.items()}
    assert json.loads((copy / "export.json").read_text())["temperatures"] == fitted
    assert load_export_manifest(copy).temperatures == fitted  # verifies every file's hash
    lone = manifest_from_onnx_metadata(read_onnx_metadata(copy / "model.onnx"), "model.onnx")
    assert lone.temperatures == fitted
    assert check_onnx_digest(copy / "model.onnx") is not None
    assert {p.name: p.read_bytes() for p in export.iterdir()} == before  # the input is unchanged

    # Evaluated again, the copy has the same accuracy and predictions, and ships the refit's ECE.
    again = _eval("--model", f"copy={copy}", "--data", f"fairface={data}", "--out", str(tmp_path / "r2"))
    for task in fitted:
        assert (
            again["models"]["copy"]["datasets"]["fairface"]["tasks"][task]
            == entry["datasets"]["fairface"]["tasks"][task]
        )
        shipped = again["models"]["copy"]["datasets"]["fairface"]["calibration"][task]["model"]
        assert shipped["ece"] == pytest.approx(calibration[task]["refit"]["ece"], abs=1e-12)
        assert shipped["temperature"] == fitted[task]
    with (
        open(out / "predictions" / "over" / "fairface.csv") as a,
        open(tmp_path / "r2/predictions/copy/fairface.csv") as b,
    ):
        assert [r[1:] for r in csv.reader(a)] == [r[1:] for r in csv.reader(b)]


def test_calibrate_refuses_to_write_into_its_input(overconfident: tuple[Path, Path]) -> None:
    from facesdk.errors import ConfigError
    from facesdk.training.calibration_report import write_calibrated

    export, _ = overconfident
    with pytest.raises(ConfigError, match="overlaps its input"):
        write_calibrated(export, {"age": 2.0}, export / "calibrated" / "x")
    with pytest.raises(ConfigError, match="lone file"):
        write_calibrated(export / "model.onnx", {"age": 2.0}, export.parent / "elsewhere")
    (export.parent / "taken").mkdir()
    with pytest.raises(ConfigError, match="not a checkpoint or export this tool wrote"):
        write_calibrated(export, {"age": 2.0}, export.parent / "taken")
