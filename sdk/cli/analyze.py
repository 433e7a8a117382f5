"""``facesdk analyze PATH... --model EXPORT``: analyse images and videos, write JSON lines.

Each output line is one frame's :class:`FrameResult` JSON with ``source`` set to the input
path (images have frame index 0). Videos, camera indices and stream URLs are processed frame
by frame with tracking.

``--json FILE`` is written to a partial file beside it and moved into place when the run ends
(:class:`facesdk.outputs.StagedFile`): a failed run leaves an existing FILE as it was. With a
live source (camera, URL) the lines written so far are also kept on Ctrl-C or SIGTERM.

The command pins glibc's mmap threshold before it reads a frame
(:func:`facesdk.memory.pin_mmap_threshold`; docs/sdk.md, Memory).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

import cv2

from ..arguments import positive_int
from ..errors import InvalidFrameError, SourceError
from ..memory import pin_mmap_threshold
from ..outputs import StagedFile, check_output_file
from ..streams import is_live_source

__all__ = ["main", "IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Analyse images and videos; print JSON lines.")
    parser.add_argument("paths", nargs="+", help="image or video files, camera indices or stream URLs")
    parser.add_argument("--model", required=True, help="export directory, .onnx or .engine file")
    parser.add_argument("--json", default=None, help="write JSON lines to this file (default: stdout)")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    parser.add_argument(
        "--backend", default="auto", choices=("auto", "onnxruntime", "openvino", "tensorrt", "torch")
    )
    parser.add_argument("--precision", default=None, choices=("fp32", "fp16", "int8"))
    parser.add_argument("--detector", default=None, help="YuNet model path (default: documented lookup)")
    parser.add_argument("--score-threshold", type=float, default=0.7, help="face detection score threshold")
    parser.add_argument(
        "--max-frames", type=positive_int, default=None, help="stop each video after this many frames (>= 1)"
    )
    parser.add_argument(
        "--min-quality",
        type=float,
        default=0.0,
        help="skip the model for faces whose quality score is below this (0..1; docs/sdk.md, Face quality)",
    )
    return parser


def _results(analyzer: object, raw: str, max_frames: int | None) -> Iterator[object]:
    if is_live_source(raw):  # a camera or URL goes to the stream as given (never made a path)
        yield from _stream(analyzer, raw, max_frames)
        return
    path = Path(raw)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InvalidFrameError(f"{path} is missing or not an image OpenCV can decode")
        yield replace(analyzer.analyze(image), source=str(path))  # type: ignore[attr-defined]
        return
    if not path.is_file():
        raise SourceError(f"{path} does not exist")
    yield from _stream(analyzer, str(path), max_frames)


def _stream(analyzer: object, source: str, max_frames: int | None) -> Iterator[object]:
    for count, result in enumerate(analyzer.stream(source)):  # type: ignore[attr-defined]
        if max_frames is not None and count >= max_frames:
            break
        yield result


def main(argv: Sequence[str], prog: str = "facesdk analyze") -> int:
    """Run ``facesdk analyze``; returns the exit code."""
    args = _parser(prog).parse_args(list(argv))
    pin_mmap_threshold()  # before the frames: freed frame buffers go back (facesdk.memory)
    from ..analyzer import Analyzer
    from ..faces.detector import DetectorConfig

    inputs = [*args.paths, args.model, args.detector]
    if args.json:
        check_output_file(args.json, inputs, force=args.force, flag="--json")
    config = DetectorConfig(score_threshold=args.score_threshold)
    with contextlib.ExitStack() as stack:
        analyzer = stack.enter_context(
            Analyzer(
                args.model,
                args.backend,
                args.detector,
                detector_config=config,
                precision=args.precision,
                min_quality=args.min_quality,
            )
        )
        out: IO[str] = sys.stdout
        if args.json:  # the detector found by the lookup is an input too
            check_output_file(args.json, [*inputs, _detector_file(analyzer)], force=args.force, flag="--json")
            live = any(is_live_source(raw) for raw in args.paths)
            staged = stack.enter_context(StagedFile(args.json, force=args.force, keep_partial=live))
            out = stack.enter_context(open(staged, "w", encoding="utf-8"))
        frames = 0
        for raw in args.paths:
            for result in _results(analyzer, raw, args.max_frames):
                out.write(result.dumps() + "\n")  # type: ignore[attr-defined]
                frames += 1
        out.flush()
    logger.info("analysed %d frame(s) from %d input(s)", frames, len(args.paths))
    return 0


def _detector_file(analyzer: object) -> str | None:
    """The model file of the detector the Analyzer uses (``None`` for a detector object without one)."""
    path = getattr(getattr(analyzer, "detector", None), "model_path", None)
    return str(path) if path is not None else None
