"""``python -m facesdk.training train|data ...``: the same as ``facesdk train|data``."""

from __future__ import annotations

import sys

from facesdk.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
