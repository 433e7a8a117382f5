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
    StagedFile,
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
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal's foreground job has it
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


def test_staged_file_replaces_only_when_the_block_ends_well(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    out.write_text("earlier\n")
    with pytest.raises(RuntimeError), StagedFile(out, force=True) as part:
        part.write_text("half a result")
        assert part.parent == tmp_path and part.suffix == ".jsonl" and part.name.startswith(".results.")
        raise RuntimeError("the source failed")
    assert out.read_text() == "earlier\n" and _tree(tmp_path) == ["results.jsonl"]
    with StagedFile(out, force=True) as part:
        part.write_text("new\n")
        assert out.read_text() == "earlier\n"  # nothing moves before the end
    assert out.read_text() == "new\n" and _tree(tmp_path) == ["results.jsonl"]
    with StagedFile(tmp_path / "never.avi"):
        pass  # a writer that never opened (no frame) leaves nothing
    assert _tree(tmp_path) == ["results.jsonl"]


def test_staged_file_refuses_an_output_that_appeared(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with pytest.raises(ConfigError, match="appeared while this command ran"), StagedFile(out) as part:
        part.write_text("mine")
        out.write_text("someone else's")
    assert out.read_text() == "someone else's" and _tree(tmp_path) == ["out.jsonl"]


_GROWING = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from facesdk.outputs import StagedFile
with StagedFile(sys.argv[1], force=True, keep_partial=sys.argv[2] == "keep") as part:
    with open(part, "w") as fh:
        if sys.argv[3] == "write":
            fh.write("frame 0\\n")
            fh.flush()
        print(part, flush=True)
        time.sleep(60)
"""


@pytest.mark.parametrize(
    ("keep", "write", "sig", "expected"),
    [
        ("keep", "write", signal.SIGTERM, "frame 0\n"),  # a live source's partial result is the user's
        ("keep", "write", signal.SIGINT, "frame 0\n"),
        ("keep", "empty", signal.SIGTERM, "earlier\n"),  # nothing yet: the old file stays
        ("drop", "write", signal.SIGTERM, "earlier\n"),  # a file source's partial result is dropped
    ],
)
def test_signal_moves_or_removes_a_staged_file(
    tmp_path: Path, keep: str, write: str, sig: signal.Signals, expected: str
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("earlier\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", _GROWING, str(out), keep, write], stdout=subprocess.PIPE, text=True
    )
    part = Path(proc.stdout.readline().strip())  # type: ignore[union-attr]
    assert part.is_file()
    proc.send_signal(sig)
    assert proc.wait(timeout=20) != 0
    assert out.read_text() == expected
    assert _tree(tmp_path) == ["out.jsonl"]


def test_a_killed_runs_partial_file_is_cleaned(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = tmp_path / f".out.avi.facesdk-partial-{dead}-0123abcd.avi"
    stale.write_bytes(b"half a video")
    live = tmp_path / f".out.avi.facesdk-partial-{os.getpid()}-0123abcd.avi"
    live.write_bytes(b"another run's")
    users = tmp_path / ".out.avi.partial"
    users.write_bytes(b"keep")
    with StagedFile(tmp_path / "other.jsonl") as part:
        part.write_text("x")
    assert not stale.exists() and live.is_file() and users.is_file()


def test_merge_into_refreshes_a_report_and_keeps_the_rest(tmp_path: Path) -> None:
    """What eval and bench do with their own folder: the new report's files replace the old ones."""
    from facesdk.outputs import merge_into

    out = tmp_path / "report"
    (out / "plots").mkdir(parents=True)
    (out / "metrics.json").write_text("old")
    (out / "plots" / "old.png").write_text("old plot")
    (out / "notes.txt").write_text("the user's")
    staged = StagedDir(out, force=True)
    with staged as stage:
        (stage / "metrics.json").write_text("new")
        (stage / "plots").mkdir()
        (stage / "plots" / "new.png").write_text("new plot")
        staged.commit(swap=merge_into)
    assert (out / "metrics.json").read_text() == "new"
    assert _tree(out) == ["metrics.json", "notes.txt", "plots", "plots/new.png"]
    assert _tree(tmp_path) == ["report", *(f"report/{p}" for p in _tree(out))]  # no staging, no old copy
    fresh = tmp_path / "fresh"
    staged = StagedDir(fresh, force=True)
    with staged as stage:
        (stage / "metrics.json").write_text("first")
        staged.commit(swap=merge_into)
    assert _tree(fresh) == ["metrics.json"]
