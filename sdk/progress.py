"""Progress bars that show only where someone watches them: one helper for every bar of the project.

tqdm redraws its bar with carriage returns; written to a log file, a pipe or CI output, each redraw
becomes a line of its own (hundreds per run). :func:`progress_bar` draws on stderr only when stderr is
a terminal, and otherwise passes the iterable through untouched (its ``update``/``close`` still work).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any, TypeVar

from tqdm import tqdm

__all__ = ["is_terminal", "progress_bar"]

T = TypeVar("T")


def is_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` is an open terminal (False for files, pipes, closed or missing streams)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(
    iterable: Iterable[T] | None = None, *, disable: bool = False, file: IO[str] | None = None, **kwargs: Any
) -> tqdm:
    """A tqdm bar on ``file`` (default stderr), drawn only when that stream is a terminal.

    Args:
        iterable: What to iterate, as for ``tqdm``; ``None`` for a bar driven by ``update``.
        disable: Hide the bar even on a terminal (a ``--no-progress`` option, a worker rank).
        file: The stream to draw on (tests pass their own).
        **kwargs: Passed to ``tqdm`` (``desc``, ``total``, ``unit``, ``leave``, ...).
    """
    file = sys.stderr if file is None else file
    return tqdm(iterable, file=file, disable=disable or not is_terminal(file), **kwargs)
