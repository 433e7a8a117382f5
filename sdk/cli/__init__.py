"""The ``facesdk`` command: one console script whose subcommands live in their stages.

Each subcommand's module is imported only when it runs, so ``facesdk analyze`` never
imports torch and a missing extra is reported by name. The runtime's own subcommands are the
modules of this package (:mod:`.analyze`, :mod:`.demo`, :mod:`.models`); the stages and the
audience, bench and serving packages keep theirs.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

from ..errors import EXIT_USAGE, DependencyError, run_guarded

__all__ = ["main", "run_guarded", "COMMANDS", "EXIT_USAGE"]

# name -> (module with main(argv, prog), argv prefix, extra it needs, one-line help)
COMMANDS: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "train": ("facesdk.training.cli", ("train",), "train", "train a model from a YAML config"),
    "data": ("facesdk.training.cli", ("data",), "train", "prepare datasets into facesdk manifests"),
    "eval": ("facesdk.training.evaluate", (), "train", "evaluate a checkpoint or export on manifests"),
    "explain": ("facesdk.training.explain", (), "train", "attention maps / Grad-CAM of checkpoints on faces"),
    "zeroshot": (
        "facesdk.training.zeroshot.cli",
        (),
        "zeroshot",
        "compile a CLIP text tower into heads: a model with no training",
    ),
    "export": ("facesdk.export.cli", (), "export", "merge adapters, export ONNX and TensorRT engines"),
    "calibrate": ("facesdk.calibration.cli", (), "", "collect INT8 calibration crops"),
    "analyze": ("facesdk.cli.analyze", (), "", "analyse images and videos, print JSON lines"),
    "demo": ("facesdk.cli.demo", (), "", "webcam/video demo: boxes, labels, track ids, FPS"),
    "audience": ("facesdk.audience.cli", (), "", "audience measurement from cameras; reports from records"),
    "bench": ("facesdk.bench", (), "", "parameters, GFLOPs and latency report"),
    "models": ("facesdk.cli.models", (), "", "locate or fetch the face detector model"),
    "serve": ("facesdk.serving.cli", (), "serving", "Triton model repository, loopback server, serving env"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: facesdk <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, _, _, help_) in COMMANDS.items()]
    lines += ["", "Run 'facesdk <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facesdk`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from .. import __version__

        print(f"facesdk {__version__}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        print(f"facesdk: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, prefix, extra, _ = COMMANDS[name]

    def run() -> int | None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if isinstance(exc, DependencyError) or not extra:
                raise
            raise DependencyError(
                f"'facesdk {name}' needs the [{extra}] extra ({exc}). Install it with: pip install 'facesdk[{extra}]'"
            ) from exc
        return module.main([*prefix, *args[1:]], prog=f"facesdk {name}")

    return run_guarded(f"facesdk {name}", run)


if __name__ == "__main__":
    sys.exit(main())
