"""Process memory settings for the programs that run the SDK (``facesdk analyze``).

glibc's ``malloc`` serves a block of at least the *mmap threshold* (128 KiB) with its own ``mmap``
and unmaps it on ``free``. Its default is dynamic: freeing such a block raises the threshold to
that block's size (up to 32 MiB), so from then on blocks of that size (a decoded 1280 x 720 frame
is 2.7 MB, a 384 px float crop 1.7 MB) come from the heap of the thread that allocates them, and
what the capture, detector and classifier threads free there is kept. In ``facesdk analyze``
over a six-face 1280 x 720 video that kept ~20 MiB more resident (docs/benchmarks/memory.md).
:func:`pin_mmap_threshold` fixes the threshold at its default, which turns the adjustment off.

A library does not change its host process's allocator; a program that embeds the SDK can call
:func:`pin_mmap_threshold` first thing, or start with ``MALLOC_MMAP_THRESHOLD_=131072``.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["MMAP_THRESHOLD", "pin_mmap_threshold", "user_malloc_settings"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 128 * 1024
"""glibc's initial mmap threshold (bytes), kept fixed."""

M_MMAP_THRESHOLD = -3
"""``mallopt`` parameter number of the mmap threshold (``<malloc.h>``)."""

MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
"""Environment variables by which a user fixes the threshold (either one turns its adjustment off)."""

TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")


def user_malloc_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """The glibc malloc threshold settings the user made in the environment (names only)."""
    environ = os.environ if environ is None else environ
    found = [name for name in MALLOC_VARIABLES if name in environ]
    tunables = environ.get("GLIBC_TUNABLES", "")
    found += [name for name in TUNABLES if name in tunables]
    return found


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD, libc: Any = None) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes, so freed large blocks go back to the system.

    Does nothing where the user set a threshold (:func:`user_malloc_settings`: theirs stands) and
    on C libraries other than glibc.

    Args:
        threshold: Blocks of at least this many bytes are mapped on their own.
        libc: The C library (tests pass a fake); default: this process's glibc.

    Returns:
        True when the threshold was set.
    """
    mine = user_malloc_settings()
    if mine:
        logger.debug("malloc: keeping the user's %s", ", ".join(mine))
        return False
    if libc is None:
        try:
            glibc = os.confstr("CS_GNU_LIBC_VERSION")
        except (AttributeError, ValueError, OSError):  # no confstr (Windows) or no such name
            glibc = None
        if not glibc:
            return False
        libc = ctypes.CDLL(None)
    done = bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    logger.debug("malloc: mmap threshold %s at %d bytes", "fixed" if done else "not changed", threshold)
    return done
