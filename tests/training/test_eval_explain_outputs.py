"""``facesdk eval`` and ``facesdk explain`` leave no litter: their folders are staged (a signal or a
kill leaves nothing a later run trips on), and ``eval --calibrate`` refuses what it cannot fit
before any model runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.cli import main
from facesdk.training.calibration_report import MIN_FIT_ROWS
from facesdk.training.datasets import write_manifest
from tests.helpers import one_error

pytest.importorskip("onnx")


def _manifest(root: Path, count: int) -> Path:
    """``count`` random 32 px crops, every task labelled."""
    (root / "crops").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    rows = []
    for i in range(count):
        cv2.imwrite(str(root / "crops" / f"{i}.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        rows.append((f"crops/{i}.png", i % 9, i % 2, i % 7))
    write_manifest(root / f"rows{count}.csv", rows)
    return root / f"rows{count}.csv"


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("lone", [False, True])
def test_calibrate_refuses_before_any_model_runs(
    tmp_path: Path,
    tiny_export: Path,
    lone: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import facesdk.training.evaluate as evaluate

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model ran before --calibrate was refused")

    monkeypatch.setattr(evaluate, "_evaluate_model", never)
    rows = _manifest(tmp_path, MIN_FIT_ROWS if lone else MIN_FIT_ROWS - 1)
    model = tiny_export / "model.onnx" if lone else tiny_export
    out = tmp_path / "E"
    assert main(["eval", "--model", str(model), "--data", f"s={rows}", "--out", str(out), "--calibrate"]) == 2
    line = one_error(capsys)
    if lone:
        assert "is not one (a lone file" in line
    else:
        have = MIN_FIT_ROWS - 1
        assert f"at least {MIN_FIT_ROWS} labelled rows" in line
        assert f"{have} for age, {have} for gender, {have} for emotion" in line
    assert not out.exists() and _litter(tmp_path) == []


def test_calibrate_fits_from_enough_rows_within_the_range(tmp_path: Path, tiny_export: Path) -> None:
    rows = _manifest(tmp_path, MIN_FIT_ROWS)
    out = tmp_path / "E"
    argv = ["eval", "--model", str(tiny_export), "--data", f"s={rows}", "--out", str(out), "--calibrate"]
    assert main(argv) == 0
    temperatures = json.loads((out / "calibrated" / tiny_export.name / "export.json").read_text())[
        "temperatures"
    ]
    assert set(temperatures) == {"age", "gender", "emotion"}
    assert all(0.05 <= t <= 20.0 for t in temperatures.values())
    (out / "notes.txt").write_text("the user's")
    assert main(argv) == 0  # its own report is refreshed, the rest kept
    assert (out / "notes.txt").read_text() == "the user's" and (out / "metrics.json").is_file()
    assert _litter(tmp_path) == []


# Runs a command in a child whose slow step prints its staging folder and waits for the signal.
_CHILD = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)
module, slow, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
import importlib
target = importlib.import_module(module)
real = getattr(target, slow)

def stall(*args, **kwargs):
    result = real(*args, **kwargs) if slow != "_explain_image" else {}
    stage = next(Path(sys.argv[-1]).parent.glob(".OUT.*"))
    (stage / "partial.png").write_bytes(b"x" * 1000)
    print(stage, flush=True)
    time.sleep(60)
    return result

setattr(target, slow, stall)
if module.endswith("explain"):
    class Fake:
        def __init__(self, *args, **kwargs):
            pass
    target.FaceDetector = Fake
    target.load_checkpoint_with_manifest = lambda path: (None, type("M", (), {"method": type("N", (), {"name": "x"})}))
from facesdk.cli import main
sys.exit(main(argv))
"""


def _child(tmp_path: Path, module: str, slow: str, argv: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-c", _CHILD, module, slow, *argv]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def _commands(tmp_path: Path, tiny_export: Path) -> dict[str, tuple[str, str, list[str]]]:
    rows = _manifest(tmp_path, MIN_FIT_ROWS)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((48, 64, 3), np.uint8))
    (tmp_path / "ckpt").mkdir()
    out = str(tmp_path / "OUT")
    return {
        "eval": (
            "facesdk.training.evaluate",
            "report_calibration",
            ["eval", "--model", str(tiny_export), "--data", f"s={rows}", "--calibrate", "--out", out],
        ),
        "explain": (
            "facesdk.training.explain",
            "_explain_image",
            ["explain", str(image), "--model", str(tmp_path / "ckpt"), "--out", out],
        ),
    }


@pytest.mark.parametrize(("command", "sig"), [("eval", signal.SIGTERM), ("explain", signal.SIGTERM)])
def test_a_signal_leaves_no_partial_folder(
    tmp_path: Path, tiny_export: Path, command: str, sig: signal.Signals
) -> None:
    """(SIGINT takes the same path: tests/sdk/test_outputs.py.)"""
    module, slow, argv = _commands(tmp_path, tiny_export)[command]
    proc = _child(tmp_path, module, slow, argv)
    stage = Path(proc.stdout.readline().strip())  # type: ignore[union-attr]
    assert stage.is_dir(), proc.stderr.read()  # type: ignore[union-attr]
    proc.send_signal(sig)
    assert proc.wait(timeout=30) != 0
    assert not (tmp_path / "OUT").exists() and _litter(tmp_path) == []


@pytest.mark.parametrize("command", ["eval", "explain"])
def test_the_next_run_cleans_what_a_killed_run_left(tmp_path: Path, tiny_export: Path, command: str) -> None:
    module, slow, argv = _commands(tmp_path, tiny_export)[command]
    proc = _child(tmp_path, module, slow, argv)
    stage = Path(proc.stdout.readline().strip())  # type: ignore[union-attr]
    proc.kill()  # SIGKILL: nothing runs, the staging folder stays
    proc.wait(timeout=30)
    assert stage.is_dir() and not (tmp_path / "OUT").exists()
    if command == "eval":
        assert main(argv) == 0  # the real run, this time to the end
        assert (tmp_path / "OUT" / "metrics.json").is_file()
    else:
        from facesdk.outputs import StagedDir

        with StagedDir(tmp_path / "OUT"):  # what explain's next run enters first
            pass
    assert _litter(tmp_path) == []
