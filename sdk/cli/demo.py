"""``facesdk demo``: live view of boxes, labels with confidences, track ids and FPS.

Each tracked face goes through the backbone when it first appears and then about once a
second (``--refresh``), at most ``--max-crops`` faces per frame; every frame still shows every
face's latest estimate. On a camera the picture never waits for the backbone: a face that has
just appeared is labelled "estimating..." for the fraction of a second until its first reading
arrives, and each label shows how old its reading is. A video file waits for its readings
(``--wait``/``--no-wait`` override both). ``--every-frame`` infers every face of every frame instead.

A window opens only where OpenCV's highgui works. ``opencv-python-headless`` (the SDK's
dependency) has none, so the demo then runs headless and says so in a log line; ``--save``
writes the annotated video either way. Press ``q`` in the window to quit; Ctrl-C works too.

``--save`` follows the output rules of :mod:`facesdk.outputs`: it may not be a source, the
model or the detector, an existing file is replaced only with ``--force``, and the video is
written to a partial file beside it and moved into place when the demo ends (on ``q``, the
end of the source, Ctrl-C or SIGTERM; a run that fails before its first frame leaves nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..arguments import positive_int
from ..errors import ConfigError, SourceError
from ..outputs import StagedFile, check_output_file
from ..results import FrameResult
from ..streams.scheduling import ScheduleConfig

__all__ = ["draw_label", "draw_results", "highgui_available", "label_box", "main", "open_writer"]

logger = logging.getLogger(__name__)

WINDOW = "facesdk demo"
FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}


def highgui_available() -> bool:
    """True when OpenCV can open a window here (False for opencv-python-headless or no display)."""
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
        cv2.destroyWindow(WINDOW)
        return True
    except cv2.error:
        return False


FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_SCALE = 0.45
LABEL_PAD = 3
"""Pixels of background box around a label's text on every side."""


def _text_size(text: str, scale: float, thickness: int) -> tuple[tuple[int, int], int]:
    """``cv2.getTextSize`` with room for descenders even when ``text`` has none (equal line heights)."""
    (w, h), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    (_, ref_h), ref_baseline = cv2.getTextSize("Agjy", FONT, scale, thickness)
    return (w, max(h, ref_h)), max(baseline, ref_baseline)


def label_box(
    text: str, org: tuple[int, int], scale: float = LABEL_SCALE, thickness: int = 1
) -> tuple[int, int, int, int]:
    """The filled box ``(x0, y0, x1, y1)`` (inclusive) that :func:`draw_label` paints for ``text``.

    ``org`` is the box's bottom-left corner. The size comes from ``cv2.getTextSize`` (text
    height plus the baseline, for descenders; equal for every text of one scale) and
    :data:`LABEL_PAD` on every side.
    """
    (w, h), baseline = _text_size(text, scale, thickness)
    x0, y1 = org
    return x0, y1 - h - baseline - 2 * LABEL_PAD, x0 + w + 2 * LABEL_PAD, y1


def draw_label(
    image: np.ndarray,
    text: str,
    org: tuple[int, int],
    color: tuple[int, int, int] = (255, 255, 255),
    background: tuple[int, int, int] = (0, 0, 0),
    scale: float = LABEL_SCALE,
    thickness: int = 1,
) -> tuple[int, int, int, int]:
    """Draw ``text`` on a filled background box whose bottom-left corner is ``org``; return the box.

    One filled rectangle and one thin ``putText``: no thick outline under the text (under
    OpenCV 5 a thick outline advances wider than the text and smears every label).
    """
    x0, y0, x1, y1 = label_box(text, org, scale, thickness)
    cv2.rectangle(image, (x0, y0), (x1, y1), background, cv2.FILLED)
    _, baseline = _text_size(text, scale, thickness)
    baseline_y = y1 - LABEL_PAD - baseline
    cv2.putText(image, text, (x0 + LABEL_PAD, baseline_y), FONT, scale, color, thickness, cv2.LINE_AA)
    return x0, y0, x1, y1


def _label_height(scale: float = LABEL_SCALE) -> int:
    x0, y0, x1, y1 = label_box("Ag", (0, 0), scale)
    return y1 - y0 + 1


def draw_results(frame: np.ndarray, result: FrameResult, fps: float | None = None) -> np.ndarray:
    """Return a copy of ``frame`` with boxes, ``#track label conf`` lines and FPS drawn.

    The label lines stack above each face box (below its top edge when the face touches the
    top of the frame), each on its own filled box.
    """
    out = frame.copy()
    step = _label_height()
    for face in result.faces:
        x, y, w, h = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 220, 0), 2)
        head = f"#{face.track_id}" if face.track_id is not None else f"{face.score:.2f}"
        if not face.estimated:
            head += " estimating..."
        elif face.estimate_age_s >= 0.05:
            head += f" ({face.estimate_age_s:.1f} s ago)"
        lines = [head, *(f"{name}: {p.label} {p.confidence:.2f}" for name, p in face.attributes.items())]
        bottom = max(y - 2, step * len(lines) - 1)
        for i, text in enumerate(lines):
            draw_label(out, text, (max(0, x), bottom - step * (len(lines) - 1 - i)))
    if fps is not None:
        draw_label(out, f"{fps:.1f} FPS", (4, 4 + _label_height(0.6)), (0, 255, 255), scale=0.6)
    return out


def open_writer(path: str | Path, size: tuple[int, int], fps: float) -> Any:
    """Open a ``cv2.VideoWriter`` (mp4v for .mp4/.mov/.mkv, MJPG for .avi) of ``size`` (w, h)."""
    path = Path(path)
    fourcc = FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise ConfigError(f"--save must end in one of {sorted(FOURCC)}, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise SourceError(f"OpenCV cannot write {path} with codec {fourcc}")
    return writer


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Webcam/video demo with boxes, labels and track ids."
    )
    parser.add_argument(
        "--source",
        action="append",
        default=None,
        help="camera index, video file or URL (default: 0); repeat it to analyse several sources on one engine",
    )
    parser.add_argument("--model", required=True, help="export directory, .onnx or .engine file")
    parser.add_argument(
        "--backend", default="auto", choices=("auto", "onnxruntime", "openvino", "tensorrt", "torch")
    )
    parser.add_argument("--detector", default=None, help="YuNet model path (default: documented lookup)")
    parser.add_argument("--save", default=None, help="write the annotated video here (.mp4 or .avi)")
    parser.add_argument("--force", action="store_true", help="replace an existing --save file")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate of the saved video")
    parser.add_argument("--no-window", action="store_true", help="never open a window")
    parser.add_argument(
        "--max-frames", type=positive_int, default=None, help="stop after this many frames (>= 1)"
    )
    parser.add_argument("--smoothing", type=float, default=None, help="probability smoothing (0 = off)")
    parser.add_argument(
        "--refresh",
        type=float,
        default=ScheduleConfig().refresh_s,
        help="re-infer a tracked face when its estimate is this many seconds old (default: %(default)s)",
    )
    parser.add_argument(
        "--max-crops",
        type=positive_int,
        default=ScheduleConfig().max_crops_per_frame,
        help="most faces sent to the backbone per frame (default: %(default)s)",
    )
    parser.add_argument(
        "--every-frame", action="store_true", help="infer every face of every frame (no per-track schedule)"
    )
    parser.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="make each frame wait for the readings it asked for (default: a camera or URL never waits, "
        "so new faces show 'estimating...' for a moment; a video file waits)",
    )
    return parser


def _schedule(args: argparse.Namespace) -> ScheduleConfig:
    if args.every_frame and args.wait is False:
        raise ConfigError(
            "--every-frame infers every face of every frame, so each frame waits: drop --no-wait"
        )
    return ScheduleConfig(
        enabled=not args.every_frame, refresh_s=args.refresh, max_crops_per_frame=args.max_crops
    )


def _multi(args: argparse.Namespace, sources: list[str]) -> int:
    """Several sources on one Analyzer (``Analyzer.streams``): one log line per frame (no window yet)."""
    from ..analyzer import Analyzer

    frames = 0
    with Analyzer(args.model, args.backend, args.detector) as analyzer:
        multi = analyzer.streams(sources, smoothing=args.smoothing, schedule=_schedule(args), wait=args.wait)
        try:
            for result in multi:
                frames += 1
                logger.info("%s frame %d: %d face(s)", result.source, result.index, len(result.faces))
                if args.max_frames is not None and frames >= args.max_frames:
                    break
        except KeyboardInterrupt:
            logger.info("interrupted")
        finally:
            multi.close()
    for source, error in multi.errors.items():
        logger.warning("source %s failed: %s", source, error)
    logger.info("demo processed %d frame(s) from %d source(s)", frames, len(sources))
    return 0


def main(argv: Sequence[str], prog: str = "facesdk demo") -> int:
    """Run the demo; returns the exit code."""
    args = _parser(prog).parse_args(list(argv))
    window = not args.no_window and highgui_available()
    if not args.no_window and not window:
        logger.info("OpenCV has no working highgui here (opencv-python-headless?); running headless")
    if not window and args.save is None:
        logger.info("no window and no --save: results are only logged")
    sources = args.source or ["0"]
    schedule = _schedule(args)
    if len(sources) > 1:
        if args.save is not None:
            raise ConfigError("--save writes one video; use it with a single --source")
        return _multi(args, sources)
    if args.save is not None:
        if Path(args.save).suffix.lower() not in FOURCC:
            raise ConfigError(f"--save must end in one of {sorted(FOURCC)}, got {Path(args.save).name!r}")
        check_output_file(args.save, [*sources, args.model, args.detector], force=args.force, flag="--save")
    frames = _single(args, sources[0], schedule, window)
    logger.info("demo processed %d frame(s)%s", frames, f", saved {args.save}" if args.save else "")
    return 0


def _single(args: argparse.Namespace, source: str, schedule: ScheduleConfig, window: bool) -> int:
    """One source: draw, show and save each frame; returns the number of frames processed."""
    from ..analyzer import Analyzer

    inputs = [source, args.model, args.detector]
    writer, frames, fps, last = None, 0, None, time.perf_counter()
    try:
        with contextlib.ExitStack() as outputs, Analyzer(args.model, args.backend, args.detector) as analyzer:
            save = None
            if args.save is not None:  # the detector found by the lookup is an input too
                detector = getattr(analyzer.detector, "model_path", None)
                check_output_file(args.save, [*inputs, detector], force=args.force, flag="--save")
                save = outputs.enter_context(StagedFile(args.save, force=args.force, keep_partial=True))
                outputs.callback(lambda: writer is not None and writer.release())  # before the move
            stream = analyzer.stream_frames(
                source, smoothing=args.smoothing, schedule=schedule, wait=args.wait
            )
            with contextlib.closing(stream):
                for frame, result in stream:
                    now = time.perf_counter()
                    rate = 1.0 / max(now - last, 1e-6)
                    fps, last = rate if fps is None else 0.9 * fps + 0.1 * rate, now
                    image = draw_results(frame, result, fps)
                    if save is not None:
                        writer = writer or open_writer(save, (image.shape[1], image.shape[0]), args.fps)
                        writer.write(image)
                    if window:
                        cv2.imshow(WINDOW, image)
                        if cv2.waitKey(1) & 0xFF == ord("q"):
                            break
                    frames += 1
                    if args.max_frames is not None and frames >= args.max_frames:
                        break
    except KeyboardInterrupt:
        logger.info("interrupted")
    finally:
        if writer is not None:
            writer.release()
        if window:
            cv2.destroyAllWindows()
    return frames
