"""The timing harness: each row in its own child process, rows in alternating rounds, medians
and per-round ratios.

A row is a JSON-able dict naming what to time (``label``, ``batch``, ``threads``, ``repeats`` and
what the worker needs). Rows run in child processes because ONNX Runtime's idle threads and
OpenVINO's thread pools slow any other runtime sharing the process; they run in rounds that
alternate the order (forward, reversed, ...) so slow drift of a shared machine hits every row
alike. Ratios are taken within each round (the row's median over the reference's median in that
round), and the report quotes their median: ratios are the numbers to quote, absolute times vary.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["time_calls", "peak_rss_mib", "run_in_child", "alternate_rounds", "summarise", "round_ratios"]

log = logging.getLogger(__name__)


def time_calls(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    """Call ``fn`` ``warmup`` times, then time ``repeats`` calls; milliseconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def peak_rss_mib() -> float | None:
    """This process's own peak resident memory so far (MiB); None where unavailable.

    Called by a row's child process after its timed calls, it is the row's peak: each row runs in
    a process of its own (Python, numpy, OpenCV and the runtime included). On Linux it is the
    memory map's high-water mark (``VmHWM`` in ``/proc/self/status``): ``getrusage``'s
    ``ru_maxrss`` survives ``exec``, so a child started by a process that once held 1.2 GB (a
    benchmark that built a model with torch) reported 1.2 GB for every row, and ``auto`` weighed
    no memory at all. Elsewhere ``getrusage`` (the same caveat).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:  # no procfs (macOS, Windows)
        pass
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (
        peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
    )  # bytes on macOS, KiB on Linux


def run_in_child(module: str, row: Mapping[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
    """Run ``python -m module --worker JSON(row)`` and return the JSON dict it prints last.

    The child gets ``OMP_NUM_THREADS`` = ``row["threads"]`` when the row names threads. A failing
    child returns the row with ``times_ms=[]`` and ``error`` (its last stderr lines), so one
    broken row does not lose the others.
    """
    env = dict(os.environ)
    if row.get("threads"):
        env["OMP_NUM_THREADS"] = str(row["threads"])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, "--worker", json.dumps(dict(row))],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {**row, "times_ms": [], "error": f"timed out after {timeout_s} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        log.warning("row %s failed: %s", row.get("label"), tail)
        return {**row, "times_ms": [], "error": tail or f"exit code {proc.returncode}"}
    return json.loads(lines[-1])


def alternate_rounds(
    rows: Sequence[Mapping[str, Any]],
    measure: Callable[[Mapping[str, Any]], dict[str, Any]],
    rounds: int = 2,
) -> list[dict[str, Any]]:
    """Measure every row ``rounds`` times, reversing the order every other round.

    Each result gets ``round`` (0-based). ``measure`` is usually
    ``functools.partial(run_in_child, module)``.
    """
    results = []
    for number in range(rounds):
        for row in rows if number % 2 == 0 else rows[::-1]:
            log.info("round %d: measuring %s at batch %s", number, row.get("label"), row.get("batch"))
            results.append({**measure(row), "round": number})
    return results


def round_ratios(results: Sequence[Mapping[str, Any]], label: str, reference: str, batch: Any) -> list[float]:
    """Per round: median time of ``label`` over median time of ``reference`` (same batch)."""

    def medians(name: str) -> dict[int, float]:
        return {
            r["round"]: statistics.median(r["times_ms"])
            for r in results
            if r["label"] == name and r.get("batch") == batch and r.get("times_ms")
        }

    mine, ref = medians(label), medians(reference)
    return [mine[k] / ref[k] for k in sorted(mine) if k in ref and ref[k] > 0]


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarise(results: Sequence[Mapping[str, Any]], reference: str | None = None) -> list[dict[str, Any]]:
    """One row per (label, batch): p50/p95 over every round's calls, and ratios to ``reference``.

    Returns:
        Dicts with ``label``, ``batch``, ``p50_ms``, ``p95_ms``, ``per_face_ms``, ``samples``,
        ``error``, ``peak_rss_mib`` (the largest over the rounds' child processes) and, when ``reference`` ran at that batch, ``ratio`` (median of the per-round
        ratios) and ``round_ratios``. Other keys of the results (e.g. ``inference_precision``)
        are carried over.
    """
    merged: dict[tuple[str, Any], dict[str, Any]] = {}
    for res in results:
        key = (res["label"], res.get("batch"))
        entry = merged.setdefault(key, {"times": [], "errors": [], "extra": {}, "rss": []})
        entry["times"] += list(res.get("times_ms") or [])
        if res.get("peak_rss_mib") is not None:
            entry["rss"].append(float(res["peak_rss_mib"]))
        if res.get("error"):
            entry["errors"].append(res["error"])
        entry["extra"].update(
            {k: v for k, v in res.items() if k in ("inference_precision", "describe", "stream_batch") and v}
        )
    table = []
    for (label, batch), entry in merged.items():
        times = entry["times"]
        p50 = _percentile(times, 0.5) if times else None
        row: dict[str, Any] = {
            "label": label,
            "batch": batch,
            "p50_ms": p50,
            "p95_ms": _percentile(times, 0.95) if times else None,
            "per_face_ms": p50 / batch if p50 is not None and batch else None,
            "samples": len(times),
            "error": "; ".join(entry["errors"]) or None,
            "peak_rss_mib": max(entry["rss"]) if entry["rss"] else None,
            **entry["extra"],
        }
        if reference is not None:
            ratios = round_ratios(results, label, reference, batch)
            if ratios:
                row["ratio"] = statistics.median(ratios)
                row["round_ratios"] = ratios
        table.append(row)
    return table
