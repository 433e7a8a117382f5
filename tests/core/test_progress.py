"""Progress bars draw only on a terminal, and every bar of the project goes through the one helper."""

from __future__ import annotations

import io
import re
from pathlib import Path

from facesdk.progress import is_terminal, progress_bar

ROOT = Path(__file__).resolve().parents[2]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_where_nobody_watches() -> None:
    log = io.StringIO()  # a log file, a pipe, CI output
    assert list(progress_bar(range(50), desc="crops", file=log, mininterval=0)) == list(range(50))
    with progress_bar(total=5, desc="crops", file=log) as bar:
        bar.update(5)
    assert log.getvalue() == ""


def test_a_bar_on_a_terminal_unless_disabled() -> None:
    terminal = _Terminal()
    assert list(progress_bar(range(3), desc="crops", file=terminal)) == [0, 1, 2]
    assert "crops" in terminal.getvalue() and "\r" in terminal.getvalue()
    quiet = _Terminal()
    list(progress_bar(range(3), desc="crops", file=quiet, disable=True))
    assert quiet.getvalue() == ""


def test_closed_or_missing_streams_are_not_terminals() -> None:
    closed = io.StringIO()
    closed.close()  # isatty() raises ValueError now
    assert not is_terminal(closed) and not is_terminal(None) and not is_terminal(object())  # type: ignore[arg-type]


def test_every_progress_bar_uses_the_helper() -> None:
    uses = re.compile(r"^\s*(from tqdm|import tqdm)", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("sdk", "training", "export", "calibration", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if path != ROOT / "sdk" / "progress.py" and uses.search(path.read_text())
    ]
    assert not offenders, f"use facesdk.progress.progress_bar instead of tqdm directly: {offenders}"
