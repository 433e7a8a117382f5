"""``python -m facesdk.calibration`` runs ``facesdk calibrate``."""

from __future__ import annotations

import logging
import sys

from .cli import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(prog="python -m facesdk.calibration"))
