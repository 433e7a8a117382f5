"""The ``facesdk`` command: one console script whose subcommands live in their stages.

Each subcommand's module is imported only when it runs, so ``facesdk analyze`` never
imports torch and a missing extra is reported by name. The runtime's own subcommands are the
modules of this package (:mod:`.analyze`, :mod:`.demo`, :mod:`.models`) and of the audience,
bench and serving packages; the stages (training, export, calibration) register theirs under the
entry-point group ``facesdk.commands`` in ``pyproject.toml``, as they register backends and
bench rows, so the runtime never names a stage module.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from ..errors import EXIT_USAGE, DependencyError, run_guarded

__all__ = ["main", "run_guarded", "COMMANDS", "COMMAND_GROUP", "EXIT_USAGE"]

COMMAND_GROUP = "facesdk.commands"
"""Entry-point group of the stages' subcommands: ``name = "module:main"``."""

# name -> (runtime module with main(argv, prog), or None for a stage's entry point; argv prefix;
# extra it needs; one-line help)
COMMANDS: dict[str, tuple[str | None, tuple[str, ...], str, str]] = {
    "train": (None, ("train",), "train", "train a model from a YAML config"),
    "data": (None, ("data",), "train", "prepare datasets into facesdk manifests"),
    "eval": (None, (), "train", "evaluate a checkpoint or export on manifests"),
    "explain": (None, (), "train", "attention maps / Grad-CAM of checkpoints on faces"),
    "zeroshot": (None, (), "zeroshot", "compile a CLIP text tower into heads: a model with no training"),
    "export": (None, (), "export", "merge adapters, export ONNX and TensorRT engines"),
    "calibrate": (None, (), "", "collect INT8 calibration crops"),
    "analyze": ("facesdk.cli.analyze", (), "", "analyse images and videos, print JSON lines"),
    "demo": ("facesdk.cli.demo", (), "", "webcam/video demo: boxes, labels, track ids, FPS"),
    "audience": ("facesdk.audience.cli", (), "", "audience measurement from cameras; reports from records"),
    "bench": ("facesdk.bench", (), "", "parameters, GFLOPs and latency report"),
    "models": ("facesdk.cli.models", (), "", "locate or fetch the face detector model"),
    "serve": ("facesdk.serving.cli", (), "serving", "Triton model repository, loopback server, serving env"),
}


def _stage_command(name: str, extra: str) -> Callable[..., Any]:
    """The ``main`` a stage registered for ``name`` (imports its module).

    Raises:
        DependencyError: Nothing is registered (facesdk installed without its metadata, e.g. run
            from a source tree that was never ``pip install``-ed).
        ImportError: The module could not be imported (the caller names the extra).
    """
    found = [ep for ep in entry_points(group=COMMAND_GROUP) if ep.name == name]
    if not found:
        where = f"pip install 'facesdk[{extra}]'" if extra else "pip install facesdk"
        raise DependencyError(
            f"'facesdk {name}' is not registered in this installation (entry-point group {COMMAND_GROUP}); "
            f"install the package, e.g. {where} (pip install -e . from a checkout)"
        )
    return found[0].load()


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: facesdk <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (*_, help_) in COMMANDS.items()]
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
            if module_name is None:
                command = _stage_command(name, extra)
            else:
                command = importlib.import_module(module_name).main
        except ImportError as exc:
            if isinstance(exc, DependencyError) or not extra:
                raise
            raise DependencyError(
                f"'facesdk {name}' needs the [{extra}] extra ({exc}). Install it with: pip install 'facesdk[{extra}]'"
            ) from exc
        return command([*prefix, *args[1:]], prog=f"facesdk {name}")

    return run_guarded(f"facesdk {name}", run)


if __name__ == "__main__":
    sys.exit(main())
