"""Live per-stage timing statistics (thread-safe)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping

import numpy as np

__all__ = ["StageStats"]


class StageStats:
    """Keeps the last ``window`` timings (ms) of each stage and summarises them, plus event counters."""

    def __init__(self, window: int = 1000) -> None:
        self._window = window
        self._values: dict[str, deque[float]] = {}
        self._counts: dict[str, int] = {}
        self._events: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, timings: Mapping[str, float]) -> None:
        """Record one frame's stage timings."""
        with self._lock:
            for stage, ms in timings.items():
                self._values.setdefault(stage, deque(maxlen=self._window)).append(float(ms))
                self._counts[stage] = self._counts.get(stage, 0) + 1

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the event counter ``name`` (e.g. faces skipped for low quality)."""
        with self._lock:
            self._events[name] = self._events.get(name, 0) + int(n)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: ``count`` (all time) and ``mean``, ``p50``, ``p90``, ``max``, ``last`` ms over the window.

        Each event counter appears as ``{name: {"count": n}}``.
        """
        with self._lock:
            out: dict[str, dict[str, float]] = {name: {"count": float(n)} for name, n in self._events.items()}
            for stage, values in self._values.items():
                arr = np.fromiter(values, dtype=np.float64)
                out[stage] = {
                    "count": float(self._counts[stage]),
                    "mean": float(arr.mean()),
                    "p50": float(np.percentile(arr, 50)),
                    "p90": float(np.percentile(arr, 90)),
                    "max": float(arr.max()),
                    "last": float(arr[-1]),
                }
            return out

    def reset(self) -> None:
        with self._lock:
            self._values.clear()
            self._counts.clear()
            self._events.clear()
