"""Checks of API and command-line arguments: a wrong type or value says what to pass.

API checks raise :class:`ConfigError`; the ``argparse`` types (:func:`positive_int`,
:func:`non_negative_int`, :func:`port`) raise ``argparse.ArgumentTypeError``, which argparse
prints as one usage line with exit code 2.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError
from .results import Detection

__all__ = ["check_model_arg", "check_detections", "check_options", "non_negative_int", "port", "positive_int"]


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer of at least 1 (counts, sizes, frames, threads)."""
    return _int_at_least(text, 1, "an integer of at least 1")


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: an integer of at least 0 (seeds; counts whose help says what 0 means)."""
    return _int_at_least(text, 0, "an integer of at least 0")


def port(text: str) -> int:
    """An ``argparse`` type: a TCP port, 1 to 65535."""
    value = _int_at_least(text, 1, "a port number from 1 to 65535")
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {value}")
    return value


def check_model_arg(model: Any) -> None:
    """Refuse a ``model`` that is not a path (``None``, an array, a loaded session...)."""
    if not isinstance(model, (str, os.PathLike)) or not str(model):
        raise ConfigError(
            f"model must be the path of an export directory, an .onnx or .engine file, or (backend "
            f"'torch') a checkpoint directory; got {type(model).__name__} {model!r:.60}"
        )


def _finite(values: Iterable[Any], count: int) -> bool:
    try:
        items = [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return len(items) == count and all(math.isfinite(v) for v in items)


def check_detections(detections: Any) -> tuple[Detection, ...]:
    """Return ``detections`` as a tuple after checking each is a :class:`Detection` with a sane box.

    Raises:
        ConfigError: Not a sequence of detections, or a box that is not four finite numbers
            with a positive width and height, or landmarks that are not finite (x, y) pairs.
    """
    hint = "pass a list of facesdk.Detection(box=(x, y, w, h), score=..., landmarks=((x, y), ...))"
    if isinstance(detections, (Detection, str, bytes, Mapping)) or not isinstance(detections, Iterable):
        raise ConfigError(
            f"detections must be a sequence of Detection; got {type(detections).__name__}: {hint}"
        )
    items = tuple(detections)
    for i, det in enumerate(items):
        if not isinstance(det, Detection):
            raise ConfigError(f"detections[{i}] is a {type(det).__name__}, not a Detection: {hint}")
        box = det.box
        if not _finite(box, 4) or float(box[2]) <= 0 or float(box[3]) <= 0:
            raise ConfigError(
                f"detections[{i}].box is {box!r}; expected (x, y, w, h): four finite numbers, w and h > 0"
            )
        if not _finite([det.score], 1):
            raise ConfigError(f"detections[{i}].score is {det.score!r}; expected a finite number")
        try:
            ok = all(_finite(p, 2) for p in det.landmarks)
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(
                f"detections[{i}].landmarks must be (x, y) pairs of finite numbers (or empty for "
                f"CropPolicy(kind='box')); got {det.landmarks!r:.80}"
            )
    return items


def check_options(
    factory: Any, what: str, options: Mapping[str, Any], positional: tuple[str, ...] = ("manifest", "path")
) -> None:
    """Refuse keyword options that ``factory`` (a class or function) does not take, naming those it does.

    Args:
        factory: The callable the options go to.
        what: Its name in the message.
        options: The keyword options given.
        positional: Parameters the caller fills itself (not options).
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    known = [n for n, p in params.items() if p.kind in kinds and n not in ("self", *positional)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{what} does not take the option(s) {unknown}; it takes {known}")
