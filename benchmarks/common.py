"""What the benchmark scripts share beyond :mod:`facesdk.bench`: the checkout's paths, the
detector lookup, child processes of a script and ONNX Runtime CPU sessions from the SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from facesdk.backends.onnxruntime import create_session
from facesdk.contract.fileio import sha256_file
from facesdk.faces.model_store import DETECTOR_SHA256, find_detector_model

__all__ = ["ROOT", "DOCS", "detector_path", "cpu_session", "child", "add_detector_option", "command_line"]

ROOT = Path(__file__).resolve().parents[1]
"""The checkout (scripts run from here: ``python -m benchmarks.<name>``)."""
DOCS = ROOT / "docs" / "benchmarks"


def detector_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The YuNet model: ``explicit`` (``--detector``) or the SDK's documented lookup
    (``$FACESDK_HOME/models``, the user cache, the copy inside the package; see ``facesdk models``)."""
    return find_detector_model(explicit)


def command_line(prefix: str, argv: list[str]) -> str:
    """The command a report records, runnable on a user's machine as written.

    A ``--detector PATH`` that names the YuNet file the SDK knows (same sha256) is left out: without
    it the SDK's lookup runs that same model (the packaged copy at the latest), and the path is
    only where this machine keeps it. Any other detector stays, since the numbers depend on it.
    """
    words, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        name, eq, value = word.partition("=")
        if name == "--detector":
            path = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            if path and Path(path).is_file() and sha256_file(path) == DETECTOR_SHA256:
                skip = not eq
                continue
        words.append(word)
    return " ".join([prefix, *words]).strip()


def add_detector_option(parser: Any) -> None:
    parser.add_argument("--detector", type=Path, default=None,
                        help="YuNet ONNX (default: the SDK's lookup, see 'facesdk models')")  # fmt: skip


def cpu_session(path: str | os.PathLike[str], threads: int = 2, **options: Any) -> Any:
    """An ONNX Runtime CPU session with the SDK's options (:func:`facesdk.backends.onnxruntime.create_session`)."""
    return create_session(
        path,
        ["CPUExecutionProvider"],
        intra_op_threads=threads,
        inter_op_threads=1,
        extra_options=options or None,
    )


def child(module: str, *args: str, env: Mapping[str, str] | None = None) -> Any:
    """Run ``python -m module *args`` from the checkout; return the JSON of its last stdout line.

    Raises:
        RuntimeError: The child failed (with the end of its stderr).
    """
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
