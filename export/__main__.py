"""``python -m facesdk.export build ...``: the same as ``facesdk export build ...``."""

from __future__ import annotations

import sys

from facesdk.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
