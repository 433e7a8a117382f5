"""What a measurement ran on: CPU model and flags, thread counts, library versions."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..backends.threads import usable_cores

__all__ = ["CPU_FLAGS", "cpu_info", "machine_info", "library_versions", "describe_cpu"]

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "amx_tile")
"""Instruction sets that decide int8/bf16 kernel choice in ONNX Runtime and OpenVINO."""

LIBRARIES = (
    "numpy",
    "opencv-python",
    "opencv-python-headless",
    "onnxruntime",
    "openvino",
    "tensorrt",
    "torch",
)
"""Distributions whose versions a report names (read from metadata: nothing is imported)."""

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, logical core count and which of :data:`CPU_FLAGS` it has.

    Args:
        cpuinfo: Text of ``/proc/cpuinfo`` (read from the system when ``None``).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return {
        "model": model or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "flags": [f for f in CPU_FLAGS if f in flags],
    }


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES` (absent ones are left out) and Python's."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """Everything a benchmark report states about the machine.

    Args:
        threads: The threads per runtime the measurement used (recorded as given).
    """
    usable = usable_cores()
    return {
        "cpu": cpu_info(),
        "threads": {
            "per_runtime": threads,
            "logical_cores": os.cpu_count(),
            "usable_cores": usable,
            **{k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        },
        "versions": library_versions(),
        "platform": f"{platform.system()} {platform.release()} ({sys.platform})",
    }


def describe_cpu(cpu: dict[str, Any]) -> str:
    """One line: ``"AMD EPYC 9xx4 (2 cores; avx2, avx512f, ...)"``."""
    flags = ", ".join(cpu.get("flags") or []) or "no avx512/amx"
    return f"{cpu.get('model', 'unknown')} ({cpu.get('cores')} cores; {flags})"
