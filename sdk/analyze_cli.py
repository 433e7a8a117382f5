"""``facesdk analyze PATH... --model EXPORT``: analyse images and videos, write JSON lines.

Each output line is one frame's :class:`FrameResult` JSON with ``source`` set to the input
path (images have frame index 0). Videos are processed frame by frame with tracking.
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

from .errors import InvalidFrameError, SourceError
from .outputs import check_output_file

__all__ = ["main", "IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Analyse images and videos; print JSON lines.")
    parser.add_argument("paths", nargs="+", help="image or video files")
    parser.add_argument("--model", required=True, help="export directory, .onnx or .engine file")
    parser.add_argument("--json", default=None, help="write JSON lines to this file (default: stdout)")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    parser.add_argument(
        "--backend", default="auto", choices=("auto", "onnxruntime", "openvino", "tensorrt", "torch")
    )
    parser.add_argument("--precision", default=None, choices=("fp32", "fp16", "int8"))
    parser.add_argument("--detector", default=None, help="YuNet model path (default: documented lookup)")
    parser.add_argument("--score-threshold", type=float, default=0.7, help="face detection score threshold")
    parser.add_argument("--max-frames", type=int, default=None, help="stop each video after this many frames")
    parser.add_argument(
        "--min-quality",
        type=float,
        default=0.0,
        help="skip the model for faces whose quality score is below this (0..1; docs/sdk.md, Face quality)",
    )
    return parser


def _results(analyzer: object, path: Path, max_frames: int | None) -> Iterator[object]:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InvalidFrameError(f"{path} is missing or not an image OpenCV can decode")
        yield replace(analyzer.analyze(image), source=str(path))  # type: ignore[attr-defined]
        return
    if not path.is_file():
        raise SourceError(f"{path} does not exist")
    for count, result in enumerate(analyzer.stream(str(path))):  # type: ignore[attr-defined]
        if max_frames is not None and count >= max_frames:
            break
        yield result


def main(argv: Sequence[str], prog: str = "facesdk analyze") -> int:
    """Run ``facesdk analyze``; returns the exit code."""
    args = _parser(prog).parse_args(list(argv))
    from .analyzer import Analyzer
    from .faces.detector import DetectorConfig

    if args.json:
        check_output_file(
            args.json, [*args.paths, args.model, args.detector], force=args.force, flag="--json"
        )
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
        )  # before the --json file is opened: a bad model leaves no empty output behind
        out: IO[str] = (
            stack.enter_context(open(args.json, "w", encoding="utf-8")) if args.json else sys.stdout
        )
        frames = 0
        for raw in args.paths:
            for result in _results(analyzer, Path(raw), args.max_frames):
                out.write(result.dumps() + "\n")  # type: ignore[attr-defined]
                frames += 1
        out.flush()
    logger.info("analysed %d frame(s) from %d input(s)", frames, len(args.paths))
    return 0
