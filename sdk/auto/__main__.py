"""``python -m facesdk.auto EXPORT``: what ``auto`` chooses on this CPU and why; ``... approve`` checks paths."""

from __future__ import annotations

import sys

from ..errors import run_guarded
from .choice import main

if __name__ == "__main__":
    sys.exit(run_guarded("python -m facesdk.auto", main))
