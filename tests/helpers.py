"""Plain helpers that several test files share (fixtures live in the conftest files).

Imported as ``tests.helpers``: pytest puts the repository root on ``sys.path`` (``pythonpath`` in
pyproject.toml).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

__all__ = ["GUARD_S", "guarded", "one_error", "train_command"]


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``error:`` line on stderr, asserting there is exactly one and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def train_command(config: Path, out: Path, *extra: str) -> list[str]:
    """``python -m facesdk.training train --config CONFIG --out OUT [EXTRA...]`` for ``subprocess``."""
    return [
        sys.executable,
        "-m",
        "facesdk.training",
        "train",
        "--config",
        str(config),
        "--out",
        str(out),
        *extra,
    ]


GUARD_S = 60.0
"""A stream that has not ended by then is hung (:func:`guarded` fails the test instead of hanging it)."""


def guarded(fn: Callable[[], Any], seconds: float = GUARD_S) -> Any:
    """Run ``fn`` in a thread; fail if it does not return within ``seconds``; re-raise its error."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the stream did not end within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]
