"""The threads a backend's runtime starts, and lowering their priority.

A stream's frame path (capture, detect, track) and its backbone share the CPU's cores. When both
want a core, the frame path must go first: a late frame is a dropped frame, a late estimate is
only a slightly older one. The classifier therefore lowers the scheduling priority (raises the
niceness) of its own thread and of the worker threads the backend's runtime started (ONNX
Runtime's intra-op pool), so the backbone runs on every cycle the frame path leaves and yields the
moment a frame arrives. Linux schedules each thread by its own niceness; elsewhere this is a no-op.

Raising niceness needs no privilege, but lowering it again does: a thread stays at the level it
was given, so only threads that serve the backbone are touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator

__all__ = ["lower_priority", "native_threads_started", "usable_cores"]

logger = logging.getLogger(__name__)

_TASKS = "/proc/self/task"
_spawn_lock = threading.RLock()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS reports it, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _task_ids() -> set[int]:
    try:
        return {int(name) for name in os.listdir(_TASKS)}
    except OSError:
        return set()


@contextlib.contextmanager
def native_threads_started() -> Iterator[set[int]]:
    """Collect the ids of native threads (not Python ``threading`` threads) started in the block.

    The set is filled when the block ends. Used around a runtime's session creation to learn its
    worker threads; blocks run one at a time, and Python threads started meanwhile by other code
    are left out, so only a native library's threads are caught. Empty where ``/proc`` is absent.
    """
    found: set[int] = set()
    with _spawn_lock:
        before = _task_ids()
        yield found
        python = {t.native_id for t in threading.enumerate()}
        found.update(_task_ids() - before - python)


def lower_priority(niceness: int, thread_ids: Iterable[int | None] = (None,)) -> list[int]:
    """Raise each thread's niceness to at least ``niceness`` (``None``: the calling thread).

    Returns the ids changed. Threads already at that level or lower priority, threads that have
    ended, and platforms without per-thread priorities are left as they are.
    """
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return []
    changed = []
    for tid in thread_ids:
        tid = threading.get_native_id() if tid is None else tid
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
                changed.append(tid)
        except OSError as exc:  # ended, or not ours
            logger.debug("cannot lower the priority of thread %d: %s", tid, exc)
    return changed
