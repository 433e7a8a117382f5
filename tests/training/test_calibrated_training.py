"""A training run fits one temperature per task on its validation split and stores it in the checkpoint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import train_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_run(tiny_synth, tiny_config, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    out = tmp_path_factory.mktemp("calibrated_run")
    config = out / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_synth.train, tiny_synth.val, optim={"epochs": 2})))
    proc = subprocess.run(
        train_command(config, out / "run"), cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "run"


def test_training_stores_validation_temperatures(tiny_run: Path, tiny_synth) -> None:  # noqa: ANN001
    from facesdk.contract.checkpoint import load_checkpoint_manifest
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import load_checkpoint
    from facesdk.training.data import FaceDataset
    from facesdk.training.datasets.manifest import read_manifest
    from facesdk.training.temperature import fit_temperature, negative_log_likelihood

    manifest = load_checkpoint_manifest(tiny_run / "checkpoint")
    assert set(manifest.temperatures) == {t.name for t in DEFAULT_TASKS}
    calibration = manifest.training["calibration"]
    for name, t in manifest.temperatures.items():
        assert calibration[name]["temperature"] == t
        assert calibration[name]["nll_after"] <= calibration[name]["nll_before"] + 1e-12
    # Refitting on the same validation logits gives the stored temperatures.
    import torch

    model = load_checkpoint(tiny_run / "checkpoint")
    data = FaceDataset(read_manifest(tiny_synth.val), manifest.tasks, manifest.preprocess)
    xs, ys = zip(*(data[i] for i in range(len(data))), strict=True)
    with torch.inference_mode():
        logits = model(torch.stack(xs))
    labels = torch.stack(ys).numpy()
    for j, task in enumerate(manifest.tasks):
        values = logits[task.name].float().numpy()
        assert fit_temperature(values, labels[:, j]) == pytest.approx(
            manifest.temperature(task.name), rel=1e-6
        )
        nll = negative_log_likelihood(values, labels[:, j], manifest.temperature(task.name))
        assert nll == pytest.approx(calibration[task.name]["nll_after"], rel=1e-6)
    assert np.isfinite(calibration["age"]["ece_after"])


def test_eval_tsne_pca_and_calibrate_on_a_checkpoint(
    tiny_run: Path,
    tiny_synth,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("sklearn")
    import facesdk.training.calibration_report as calibration_report

    monkeypatch.setattr(calibration_report, "MIN_FIT_ROWS", 1)  # this split has 6 to 12 labels per task
    from facesdk.cli import main as facesdk_main
    from facesdk.contract.checkpoint import load_checkpoint_manifest
    from facesdk.training import load_checkpoint
    from facesdk.training.datasets.manifest import read_manifest

    ckpt, out = tiny_run / "checkpoint", tmp_path / "report"
    argv = ["eval", "--model", f"tiny={ckpt}", "--data", f"synth={tiny_synth.val}", "--out", str(out)]
    assert facesdk_main([*argv, "--pca", "--tsne", "--calibrate", "--batch-size", "16"]) == 0
    record = json.loads((out / "metrics.json").read_text())["models"]["tiny"]
    rows = read_manifest(tiny_synth.val)
    features = np.load(out / "features" / "tiny" / "synth_features.npy")
    labels = np.load(out / "features" / "tiny" / "synth_labels.npy")
    assert features.shape == (len(rows), 64) and features.dtype == np.float32
    assert record["features"]["tasks"] == ["age", "gender", "emotion"]
    assert labels.tolist() == [[r.label(t) for t in ("age", "gender", "emotion")] for r in rows]
    assert np.load(out / "tsne" / "tiny" / "synth.npy").shape == (len(rows), 2)
    for kind in ("tsne", "pca"):
        for task in ("age", "gender", "emotion"):
            assert (out / kind / "tiny" / f"synth_{task}.png").stat().st_size > 0
    # The model's own temperatures (fitted on this same split) are reported; the refit matches them.
    stored = load_checkpoint_manifest(ckpt).temperatures
    assert record["temperatures"] == stored
    copy = out / "calibrated" / "tiny"
    refit = load_checkpoint_manifest(copy).temperatures
    assert refit == pytest.approx(stored, rel=1e-6)
    assert (copy / "model.safetensors").read_bytes() == (ckpt / "model.safetensors").read_bytes()
    load_checkpoint(copy)  # a loadable checkpoint


def test_export_and_sdk_carry_the_checkpoints_temperatures(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from facesdk.cli import main as facesdk_main
    from facesdk.contract.checkpoint import load_checkpoint_manifest
    from facesdk.contract.export_manifest import load_export_manifest
    from facesdk.model_loader import resolve_model

    ckpt = tiny_run / "checkpoint"
    stored = load_checkpoint_manifest(ckpt).temperatures
    assert stored and all(t != 1.0 for t in stored.values())
    assert resolve_model(ckpt, "torch").manifest.temperatures == stored  # Analyzer(ckpt, backend="torch")
    export = tmp_path / "export"
    assert (
        facesdk_main(["export", "build", "--ckpt", str(ckpt), "--out", str(export), "--max-batch", "4"]) == 0
    )
    assert load_export_manifest(export).temperatures == stored
    assert resolve_model(export / "model.onnx", "onnxruntime").manifest.temperatures == stored  # lone .onnx
