"""``python -m facesdk.calibration`` runs ``facesdk calibrate``."""

from __future__ import annotations

import logging
import sys

from facesdk.errors import run_guarded

from .cli import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(run_guarded("python -m facesdk.calibration", lambda: main(prog="python -m facesdk.calibration")))
