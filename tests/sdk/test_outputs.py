"""The output rules of every writing command: no overlap with inputs, --force only on our own output,
staging removed on signals and cleaned after a kill, single files never replace inputs or export files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facesdk.errors import ConfigError
from facesdk.outputs import (
    StagedDir,
    check_output_dir,
    check_output_file,
    clean_stale_staging,
)


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("layout", "relation"),
    [
        ("same", "is the input"),
        ("parent", "contains the input"),
        ("child", "sits inside the input"),
        ("symlink", "is the input"),
    ],
)
def test_out_may_not_overlap_an_input(tmp_path: Path, layout: str, relation: str) -> None:
    src = tmp_path / "parent" / "checkpoint"
    src.mkdir(parents=True)
    (src / "checkpoint.json").write_text("{}")
    out = {
        "same": src,
        "parent": tmp_path / "parent",
        "child": src / "export",
        "symlink": tmp_path / "link",
    }[layout]
    if layout == "symlink":
        out.symlink_to(src)
    with pytest.raises(ConfigError, match=relation):
        check_output_dir(out, [src], force=True)


def test_force_replaces_only_own_or_empty_folders(tmp_path: Path) -> None:
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        check_output_dir(foreign, [])
    with pytest.raises(ConfigError, match="did not write"):
        check_output_dir(foreign, [], force=True, manifests=("export.json",))
    own = tmp_path / "export"
    own.mkdir()
    (own / "export.json").write_text("{}")
    assert check_output_dir(own, [], force=True, manifests=("export.json",)) == own.resolve()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        check_output_dir(empty, [])
    assert check_output_dir(empty, [], force=True) == empty.resolve()
    assert check_output_dir(empty, [], reuse=True) == empty.resolve()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_output_dir(tmp_path / "file", [], force=True)


def test_reuse_accepts_own_output_only(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "calib.json").write_text("{}")
    assert check_output_dir(run, [], reuse=True, manifests=("calib.json",)) == run.resolve()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="did not write"):
        check_output_dir(tmp_path / "home", [], reuse=True, manifests=("calib.json",))


def test_single_file_never_replaces_inputs_or_export_files(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"fp32")
    (export / "export.json").write_text(
        json.dumps({"models": {"onnx-fp32": {"file": {"path": "model.onnx", "sha256": "0", "size": 4}}}})
    )
    for target in ("model.onnx", "export.json"):
        with pytest.raises(ConfigError, match="belongs to the facesdk export"):
            check_output_file(export / target, [], force=True)
    with pytest.raises(ConfigError, match="is an input"):
        check_output_file(tmp_path / "in.onnx", [tmp_path / "in.onnx"], force=True)
    with pytest.raises(ConfigError, match="is a folder"):
        check_output_file(export, [], force=True)
    other = export / "notes.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        check_output_file(other, [])
    assert check_output_file(other, [], force=True) == other.resolve()
    assert check_output_file(export / "model.int8.onnx", []) == (export / "model.int8.onnx").resolve()


def test_staged_dir_commits_and_cleans(tmp_path: Path) -> None:
    out = tmp_path / "out"
    staged = StagedDir(out)
    with staged as stage:
        (stage / "a.txt").write_text("a")
        staged.commit()
    assert _tree(tmp_path) == ["out", "out/a.txt"]
    with pytest.raises(RuntimeError), StagedDir(tmp_path / "other") as stage:
        (stage / "b.txt").write_text("b")
        raise RuntimeError("boom")
    assert _tree(tmp_path) == ["out", "out/a.txt"]
    staged = StagedDir(out)  # without force an existing output is kept
    with pytest.raises(ConfigError, match="pass --force"), staged:
        staged.commit()
    assert (out / "a.txt").read_text() == "a"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_staging_is_cleaned_but_user_folders_are_not(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = tmp_path / f".out.facesdk-staging-{dead}-0123abcd"
    stale.mkdir()
    (stale / ".facesdk-staging").write_text(f"{dead}\n")
    (stale / "model.onnx").write_bytes(b"half")
    live = tmp_path / f".out.facesdk-staging-{os.getpid()}-89abcdef"  # a run still going
    live.mkdir()
    (live / ".facesdk-staging").write_text(f"{os.getpid()}\n")
    lookalike = tmp_path / f".out.facesdk-staging-{dead}-deadbeef"  # the user's, no marker
    lookalike.mkdir()
    (lookalike / "mine.txt").write_text("keep")
    other = tmp_path / ".out.export-abc"
    other.mkdir()
    with StagedDir(tmp_path / "out"):  # the next run cleans beside its output
        pass
    assert not stale.exists()
    assert live.is_dir() and (lookalike / "mine.txt").read_text() == "keep" and other.is_dir()
    old = time.time() - 2 * 24 * 3600  # an old one is stale even if its pid was reused
    os.utime(live / ".facesdk-staging", (old, old))
    assert clean_stale_staging(tmp_path) == [live]


_SLOW = """
import sys, time
from facesdk.outputs import StagedDir
with StagedDir(sys.argv[1]) as stage:
    (stage / "part").write_text("x")
    print(stage, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_removes_staging(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True
    )
    stage = Path(proc.stdout.readline().strip())  # type: ignore[union-attr]
    assert stage.is_dir()
    proc.send_signal(sig)
    code = proc.wait(timeout=20)
    assert code != 0
    assert _tree(tmp_path) == []
