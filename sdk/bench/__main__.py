"""``python -m facesdk.bench`` (also the worker entry of the timing harness's child processes)."""

from __future__ import annotations

import logging
import sys

from ..errors import run_guarded
from .cli import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(run_guarded("python -m facesdk.bench", lambda: main(prog="python -m facesdk.bench")))
