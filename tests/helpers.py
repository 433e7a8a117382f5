"""Plain helpers that several test files share (fixtures live in the conftest files).

Imported as ``tests.helpers``: pytest puts the repository root on ``sys.path`` (``pythonpath`` in
pyproject.toml).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

__all__ = ["one_error", "train_command"]


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
