"""``facesdk.bench``: the one place that measures (runtime dependencies only).

* :mod:`.machine` — CPU model and the flags that matter, thread counts, library versions;
* :mod:`.timing` — child processes, alternating rounds, medians and per-round ratios;
* :mod:`.compare` — :func:`compare_outputs` over the Backend protocol: per-task top-1
  agreement with crop count and a Wilson 95% lower bound, max abs difference;
* :mod:`.report` — Markdown, JSON and PNG writers;
* :mod:`.cli` — ``facesdk bench``.

Sessions come only from :mod:`facesdk.backends`; torch rows are registered by the training
stage (entry point ``facesdk.bench: torch``).
"""

from __future__ import annotations

from .cli import main, measure_row, render_markdown, run_bench, zeroshot_complexity
from .compare import Agreement, Comparison, compare_arrays, compare_outputs, min_crops_for, wilson_lower_bound
from .machine import CPU_FLAGS, cpu_info, describe_cpu, library_versions, machine_info
from .report import bar_chart, fmt, markdown_table, write_report
from .timing import alternate_rounds, round_ratios, run_in_child, summarise, time_calls

__all__ = [
    "CPU_FLAGS",
    "Agreement",
    "Comparison",
    "alternate_rounds",
    "bar_chart",
    "compare_arrays",
    "compare_outputs",
    "cpu_info",
    "describe_cpu",
    "fmt",
    "library_versions",
    "machine_info",
    "main",
    "markdown_table",
    "measure_row",
    "min_crops_for",
    "render_markdown",
    "round_ratios",
    "run_bench",
    "run_in_child",
    "summarise",
    "time_calls",
    "wilson_lower_bound",
    "write_report",
    "zeroshot_complexity",
]
