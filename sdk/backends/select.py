"""Kept for existing imports and commands: ``auto``'s CPU path choice lives in :mod:`facesdk.auto.choice`.

``python -m facesdk.backends.select ...`` runs ``python -m facesdk.auto ...``.
"""

from __future__ import annotations

import functools
import sys

from ..auto.choice import (
    MARGIN,
    MEMORY_MARGIN_PER_100_MIB,
    THRESHOLD,
    Choice,
    CpuPath,
    approve_paths,
    auto_cache_dir,
    cache_key,
    candidate_paths,
    choose_cpu_path,
    cpu_signature,
    main,
    thread_settings,
    time_paths,
)

__all__ = [
    "MARGIN",
    "MEMORY_MARGIN_PER_100_MIB",
    "THRESHOLD",
    "Choice",
    "CpuPath",
    "approve_paths",
    "auto_cache_dir",
    "cache_key",
    "candidate_paths",
    "choose_cpu_path",
    "cpu_signature",
    "main",
    "thread_settings",
    "time_paths",
]

if __name__ == "__main__":
    from ..errors import run_guarded

    PROG = "python -m facesdk.backends.select"
    sys.exit(run_guarded(PROG, functools.partial(main, prog=PROG)))
