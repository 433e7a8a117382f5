"""Training cost of LoRA, DoRA and full fine-tuning side by side: ``benchmarks/methods.py``
restricted to those three methods, writing ``docs/benchmarks/training.md``.

Trainable parameters, checkpoint size, peak memory and step time come from the same children,
the same synthetic set and the same reduced backbone as the all-methods table; every option
of ``methods.py`` passes through.

    python -m benchmarks.train_methods [--steps 40 --img-size 64 --depth 4 ...]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = "lora,dora,full"


def main(argv: list[str]) -> int:
    if any(a == "--methods" or a.startswith("--methods=") for a in argv):
        raise SystemExit(f"train_methods.py always compares {METHODS}; use methods.py for other methods")
    out = (
        []
        if any(a == "--out" or a.startswith("--out=") for a in argv)
        else ["--out=docs/benchmarks/training.md"]
    )
    cmd = [sys.executable, "-m", "benchmarks.methods", f"--methods={METHODS}", *out, *argv]
    return subprocess.run(cmd, check=False, cwd=HERE.parent).returncode  # paths relative to the checkout


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
