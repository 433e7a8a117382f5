"""``facesdk export build`` never eats its inputs: each case hashes every input file before and after."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from facesdk.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _layout(checkpoints: dict[str, Path], tmp_path: Path, case: str) -> tuple[Path, list[str]]:
    """Build the case's folders under ``tmp_path/work``; return the work root and the CLI args."""
    work = tmp_path / "work"
    ckpt = work / "parent" / "checkpoint"
    shutil.copytree(checkpoints["lora"], ckpt)
    args = ["--ckpt", str(ckpt), "--force"]
    if case == "out is the checkpoint's parent":  # the data-loss case
        args += ["--out", str(work / "parent")]
    elif case == "out is the checkpoint":
        args += ["--out", str(ckpt)]
    elif case == "out inside the checkpoint":
        args += ["--out", str(ckpt / "export")]
    elif case == "out is a symlink to the checkpoint":
        (work / "link").symlink_to(ckpt)
        args += ["--out", str(work / "link")]
    elif case == "out through .. to the checkpoint":
        args += ["--out", str(work / "parent" / "x" / ".." / "checkpoint")]
    elif case == "out is the calibration set":
        calib = work / "calib"
        calib.mkdir()
        (calib / "calib.json").write_text("{}")
        args += ["--out", str(calib), "--calib", str(calib), "--precision", "fp32,int8", "--onnx-only"]
    elif case == "force on a folder facesdk did not write":
        photos = work / "photos"
        photos.mkdir()
        (photos / "holiday.jpg").write_bytes(os.urandom(64))
        args += ["--out", str(photos)]
    else:
        raise AssertionError(case)
    return work, args


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("out is the checkpoint's parent", "contains the input"),
        ("out is the checkpoint", "is the input"),
        ("out inside the checkpoint", "sits inside the input"),
        ("out is a symlink to the checkpoint", "is the input"),
        ("out through .. to the checkpoint", "is the input"),
        ("out is the calibration set", "is the input"),
        ("force on a folder facesdk did not write", "did not write"),
    ],
)
def test_export_refuses_to_eat_inputs(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    work, args = _layout(checkpoints, tmp_path, case)
    before = _hashes(work)
    code = main(["export", "build", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err
    assert _hashes(work) == before
    assert not [p for p in work.rglob(".*facesdk-staging*")]


def test_force_replaces_an_earlier_export(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert main(["export", "build", "--ckpt", str(checkpoints["lora"]), "--out", str(out)]) == 0
    (out / "stale.txt").write_text("from the old export")
    ckpt_before = _hashes(checkpoints["lora"])
    assert main(["export", "build", "--ckpt", str(checkpoints["lora"]), "--out", str(out), "--force"]) == 0
    assert not (out / "stale.txt").exists() and (out / "export.json").is_file()
    assert _hashes(checkpoints["lora"]) == ckpt_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging or old folder left


_BLOCKING_EXPORT = """
import sys, time
from pathlib import Path
from facesdk.export import pipeline

def slow_stage(options, stage, ckpt):
    (Path(stage) / "model.onnx").write_bytes(b"partial")
    print("STAGED", stage, flush=True)
    time.sleep(60)

pipeline._onnx_stage = slow_stage
from facesdk.cli import main
sys.exit(main(["export", "build", "--ckpt", sys.argv[1], "--out", sys.argv[2]]))
"""


def test_sigterm_during_export_leaves_no_staging(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_BLOCKING_EXPORT),
            str(checkpoints["lora"]),
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith("STAGED"), line
    assert Path(line.split(maxsplit=1)[1].strip()).is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
