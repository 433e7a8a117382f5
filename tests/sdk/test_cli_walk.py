"""Every documented command, given bad input, ends in one ``PROG: error: ...`` line and a non-zero
exit, never a traceback: each ``facesdk`` subcommand and each documented ``python -m facesdk...``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from facesdk.cli import COMMANDS, main

# (the command as typed, after "python -m"; a word its error line must hold). In each run's folder:
# a.png, DAMAGED (an export with a changed model file), LONE (a lone .onnx), rows.csv (one row);
# EXPORT and YUNET name the tiny export and the detector; nothing else exists.
CASES: list[tuple[str, str]] = [
    ("facesdk train --config nosuch.yaml --out OUT", "nosuch.yaml"),
    ("facesdk data prepare fairface --root nosuch --out OUT", "nosuch"),
    ("facesdk data prepare fairface --root nosuch --out OUT --workers -1", "--workers"),
    ("facesdk eval --model nosuch --data s=rows.csv --out OUT", "nosuch"),
    ("facesdk eval --model LONE --data s=rows.csv --out OUT --calibrate", "--calibrate"),
    ("facesdk explain a.png --model nosuch --out OUT", "nosuch"),
    ("facesdk explain a.png --model nosuch --out OUT --max-faces 0", "--max-faces"),
    ("facesdk zeroshot build --prompts nosuch.yaml --out OUT", "nosuch.yaml"),
    ("facesdk export build --ckpt nosuch --out OUT", "nosuch"),
    ("facesdk export build --ckpt nosuch --out OUT --max-batch 0", "--max-batch"),
    ("facesdk calibrate collect --source nosuch --model EXPORT --out OUT", "nosuch"),
    ("facesdk calibrate quantize --model EXPORT --calib nosuch --out q.onnx", "nosuch"),
    ("facesdk analyze nosuch.png --model EXPORT --detector YUNET", "nosuch.png"),
    ("facesdk analyze a.png --model nosuch", "nosuch"),
    ("facesdk analyze a.png --model EXPORT --max-frames -1", "--max-frames"),
    ("facesdk demo --source nosuch.avi --model EXPORT --detector YUNET --no-window", "nosuch.avi"),
    ("facesdk demo --source a.avi --model EXPORT --save a.avi --force", "is an input"),
    ("facesdk bench --model nosuch --out OUT", "nosuch"),
    ("facesdk bench --model EXPORT --out OUT --batches 0", "--batches"),
    ("facesdk bench --model EXPORT --out OUT --threads 0", "--threads"),
    ("facesdk models fetch --dir D --url nosuch.onnx", "nosuch.onnx"),
    ("facesdk serve export --model nosuch --out OUT", "nosuch"),
    ("facesdk audience report nosuch.jsonl --out OUT", "nosuch.jsonl"),
    ("facesdk audience --source nosuch.avi --model EXPORT --detector YUNET", "nosuch.avi"),
    ("facesdk audience --source a.avi --model EXPORT --k 0", "k must be"),
    ("facesdk serve run --model nosuch --http-port 70000", "--http-port"),
    ("facesdk.auto nosuch", "nosuch"),
    ("facesdk.auto LONE", "is a file"),
    ("facesdk.auto DAMAGED", "corrupt"),
    ("facesdk.backends.select nosuch", "nosuch"),  # the command docs named before facesdk.auto
    ("facesdk.export build --ckpt nosuch --out OUT", "nosuch"),
    ("facesdk.training train --config nosuch.yaml --out OUT", "nosuch.yaml"),
    ("facesdk.training.known_patch --out x.png --samples 0", "--samples"),
    ("facesdk.training.evaluate --model nosuch --data s=rows.csv --out OUT", "nosuch"),
    ("facesdk.calibration quantize --model nosuch --calib nosuch --out q.onnx", "nosuch"),
    ("facesdk.bench --model nosuch --out OUT", "nosuch"),
]
ERROR_LINE = re.compile(r"^(facesdk|python -m facesdk[\w.]*)( [\w-]+)*: error: ")


MODULES = [i for i, (line, _) in enumerate(CASES) if line.split()[0] != "facesdk"]
SUBCOMMANDS = [i for i, (line, _) in enumerate(CASES) if line.split()[0] == "facesdk"]


def test_every_subcommand_is_walked() -> None:
    assert {CASES[i][0].split()[1] for i in SUBCOMMANDS} == set(COMMANDS)


def _inputs(folder: Path, tiny_export: Path) -> None:
    """What the cases name: an image, a damaged export, a lone .onnx, a one-row manifest."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "a.png"), np.zeros((48, 64, 3), np.uint8))
    shutil.copytree(tiny_export, folder / "DAMAGED")
    with (folder / "DAMAGED" / "model.onnx").open("ab") as fh:
        fh.write(b"x")
    (folder / "LONE").mkdir()
    shutil.copyfile(tiny_export / "model.onnx", folder / "LONE" / "model.onnx")
    (folder / "rows.csv").write_text("path,age_group,gender,emotion\na.png,3,1,4\n")


def _argv(index: int, folder: Path, tiny_export: Path, yunet: Path) -> list[str]:
    names = {"EXPORT": str(tiny_export), "YUNET": str(yunet), "LONE": str(folder / "LONE" / "model.onnx")}
    return ["-m", *(names.get(word, word) for word in CASES[index][0].split())]


def _check(index: int, code: object, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert code == 2, (code, stderr)
    errors = [line for line in stderr.splitlines() if ERROR_LINE.match(line)]
    assert len(errors) == 1, stderr
    assert CASES[index][1] in errors[0], errors[0]


@pytest.mark.parametrize("index", SUBCOMMANDS, ids=[CASES[i][0] for i in SUBCOMMANDS])
def test_a_subcommand_given_bad_input_says_one_line(
    index: int,
    tmp_path: Path,
    tiny_export: Path,
    yunet_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In this process (the console script is ``facesdk.cli.main``): an escaping exception fails it."""
    _inputs(tmp_path, tiny_export)
    monkeypatch.chdir(tmp_path)
    try:
        code: object = main(_argv(index, tmp_path, tiny_export, yunet_path)[2:])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    _check(index, code, capsys.readouterr().err)
    assert not (tmp_path / "OUT").exists() and not (tmp_path / "D").exists()


@pytest.fixture(scope="module")
def walked(
    tmp_path_factory: pytest.TempPathFactory, tiny_export: Path, yunet_path: Path
) -> dict[int, subprocess.CompletedProcess]:
    """Each ``python -m`` case run in its own folder, a few at a time."""
    root = tmp_path_factory.mktemp("walk")

    def run(index: int) -> subprocess.CompletedProcess:
        folder = root / str(index)
        _inputs(folder, tiny_export)
        argv = _argv(index, folder, tiny_export, yunet_path)
        return subprocess.run(
            [sys.executable, *argv],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(MODULES, pool.map(run, MODULES), strict=True))


@pytest.mark.parametrize("index", MODULES, ids=[CASES[i][0] for i in MODULES])
def test_a_module_given_bad_input_says_one_line(
    walked: dict[int, subprocess.CompletedProcess], index: int
) -> None:
    proc = walked[index]
    _check(index, proc.returncode, proc.stderr)
