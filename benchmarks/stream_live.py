"""The scenes and live runs of ``benchmarks/stream.py``: paced cameras and what each run measures.

A :class:`PacedCamera` delivers a video's frames at a fixed rate, like a camera, whether or not
the pipeline keeps up: ``Analyzer.stream(camera, live=True, queue_size=1)`` drops the oldest
frame when it is behind, as it would with a real camera. The camera records when it delivered
each frame, so a run knows exactly which frames it was offered after the warm-up and can count
the ones that never became a result.

Scenes are 1280 x 720 frames made from ``skimage.data.astronaut()``: one copy, six tiles, or
:class:`ComeAndGo`, six tiles that appear and disappear on a fixed timetable, so that the delay
from a face's first frame to its first estimate can be measured against the frame it appeared in.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    "FRAME",
    "ComeAndGo",
    "LiveCase",
    "LiveFrame",
    "PacedCamera",
    "astronaut_bgr",
    "consume_live",
    "first_estimates",
    "percentiles",
    "run_live",
    "scene",
    "summarise_live",
    "worst",
    "write_video",
]

log = logging.getLogger("stream_bench")

FRAME = (1280, 720)
PAN_PX = 2
"""Pixels the scene moves per frame."""
PAN_PERIOD = 80
"""Frames of one pan out and back: videos are a whole number of periods long, so they loop seamlessly."""
TILE = 340
SLOTS = tuple((40 + 420 * col, 20 + 360 * row) for row in range(2) for col in range(3))
"""Top-left corner (x, y) of each of the six 340 px tiles (3 x 2 grid)."""
LOWER_IS_WORSE = frozenset({"delivered_fps", "faces_per_frame", "results", "episodes"})
"""Numbers of a live run where the lower of two rounds is the worse (all others: the higher)."""


def percentiles(values: Iterable[float], qs: tuple[int, ...] = (50, 95)) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "max": ...}`` of ``values`` (``None`` when empty)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if not arr.size:
        return {**{f"p{q}": None for q in qs}, "max": None}
    return {**{f"p{q}": float(np.percentile(arr, q)) for q in qs}, "max": float(arr.max())}


# ------------------------------------------------------------------------------ scenes
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[..., ::-1])


def _tile(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)


def scene(faces: int, image: np.ndarray | None = None) -> np.ndarray:
    """A 1280 x 720 gray frame with the astronaut once (centred) or six times (the :data:`SLOTS` tiles)."""
    w, h = FRAME
    canvas = np.full((h, w, 3), 90, np.uint8)
    image = astronaut_bgr() if image is None else image
    if faces == 1:
        y, x = (h - image.shape[0]) // 2, (w - image.shape[1]) // 2
        canvas[y : y + image.shape[0], x : x + image.shape[1]] = image
        return canvas
    tile = _tile(image)
    for x, y in SLOTS:
        canvas[y : y + TILE, x : x + TILE] = tile
    return canvas


def pan(i: int) -> int:
    """Horizontal shift (px) of frame ``i``: ``PAN_PX`` a frame out and back, period :data:`PAN_PERIOD`."""
    half = PAN_PERIOD // 2
    step = i % half if (i // half) % 2 == 0 else half - i % half
    return PAN_PX * step


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Write ``frames`` (1280 x 720 BGR) as an MJPG video."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, FRAME)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with MJPG")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


def panned(base: np.ndarray, frames: int) -> Iterator[np.ndarray]:
    """``base`` panned by :func:`pan`, at least ``frames`` frames, rounded up to whole pan periods."""
    count = PAN_PERIOD * max(1, math.ceil(frames / PAN_PERIOD))
    return (np.roll(base, pan(i), axis=1) for i in range(count))


@dataclass(frozen=True, slots=True)
class ComeAndGo:
    """Six astronaut tiles that come and go: slot ``k`` shows for ``on_s`` of every ``cycle_s`` seconds.

    Slot ``k``'s visits start ``k * cycle_s / 6`` into the cycle, so a face appears about every
    second and each is gone long enough for its track to end. The tiles sway sideways (at most
    ``sway_px``, one period a cycle), so the video loops seamlessly.
    """

    fps: float
    cycle_s: float = 6.0
    on_s: float = 3.5
    sway_px: int = 35

    @property
    def frames(self) -> int:
        """Frames in one cycle (the video's length)."""
        return round(self.cycle_s * self.fps)

    @property
    def on_frames(self) -> int:
        return round(self.on_s * self.fps)

    def start(self, slot: int) -> int:
        """The frame within the cycle where slot ``slot``'s visit begins."""
        return round(slot * self.frames / len(SLOTS))

    def visible(self, slot: int, i: int) -> bool:
        return (i - self.start(slot)) % self.frames < self.on_frames

    def episode(self, slot: int, i: int) -> int:
        """The first frame of the visit of ``slot`` that frame ``i`` belongs to."""
        return i - (i - self.start(slot)) % self.frames

    def episodes(self, first: int, count: int) -> list[tuple[int, int]]:
        """``(slot, first frame)`` of every visit that begins at or after ``first`` and ends within ``count`` frames."""
        found = []
        for slot in range(len(SLOTS)):
            for begin in itertools.count(self.start(slot), self.frames):
                if begin + self.on_frames > count:
                    break
                if begin >= first:
                    found.append((slot, begin))
        return sorted(found, key=lambda e: e[1])

    def sway(self, i: int) -> int:
        return round(self.sway_px * math.sin(2 * math.pi * i / self.frames))

    def slot_of(self, cx: float, cy: float, i: int) -> int:
        """The slot whose tile holds the point (``cx``, ``cy``) of frame ``i`` (the nearest tile centre)."""
        centres = [(x + TILE / 2 + self.sway(i), y + TILE / 2) for x, y in SLOTS]
        return min(range(len(SLOTS)), key=lambda k: (centres[k][0] - cx) ** 2 + (centres[k][1] - cy) ** 2)

    def frame(self, i: int, tile: np.ndarray) -> np.ndarray:
        w, h = FRAME
        canvas = np.full((h, w, 3), 90, np.uint8)
        dx = self.sway(i)
        for slot, (x, y) in enumerate(SLOTS):
            if self.visible(slot, i):
                canvas[y : y + TILE, x + dx : x + dx + TILE] = tile
        return canvas

    def write(self, path: Path, image: np.ndarray | None = None) -> Path:
        """One cycle as an MJPG video at ``fps``."""
        tile = _tile(astronaut_bgr() if image is None else image)
        return write_video(path, (self.frame(i, tile) for i in range(self.frames)), self.fps)


# ------------------------------------------------------------------------------ live runs
class PacedCamera:
    """``count`` frames of a video file delivered at ``fps`` like a camera (the file loops).

    Iterating opens the file; frame ``i`` is delivered ``i / fps`` seconds after the first, and
    :attr:`times` records when (``time.time()``, the clock of ``FrameResult.timestamp``).
    """

    def __init__(self, path: Path, fps: float, count: int) -> None:
        self.path, self.fps, self.count = path, fps, count
        self.times: list[float] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(str(self.path))
        start = time.perf_counter()
        try:
            for i in range(self.count):
                ok, frame = cap.read()
                if not ok:  # the end of the file: loop
                    cap.release()
                    cap = cv2.VideoCapture(str(self.path))
                    ok, frame = cap.read()
                    if not ok:
                        raise RuntimeError(f"cannot read {self.path}")
                delay = start + i / self.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                self.times.append(time.time())
                yield frame
        finally:
            cap.release()

    @property
    def delivered_fps(self) -> float | None:
        """The rate the frames actually went out at (below ``fps`` when reading could not keep up)."""
        if len(self.times) < 2:
            return None
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


@dataclass(frozen=True, slots=True)
class LiveFrame:
    """What a live run keeps of one result: its source, index, capture time, latency and faces.

    ``faces`` holds ``(centre x, centre y, estimated, estimate age s)`` per face.
    """

    source: str | None
    index: int
    timestamp: float
    latency_ms: float
    faces: tuple[tuple[float, float, bool, float], ...]


def consume_live(results: Iterable[Any]) -> list[LiveFrame]:
    """Every result of a live stream until it ends, with its capture-to-result latency."""
    frames = []
    for result in results:
        now = time.time()
        faces = tuple(
            (f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2, f.estimated, f.estimate_age_s)
            for f in result.faces
        )
        frames.append(
            LiveFrame(result.source, result.index, result.timestamp, (now - result.timestamp) * 1e3, faces)
        )
    return frames


def first_estimates(
    frames: Sequence[LiveFrame], times: Sequence[float], scene: ComeAndGo, warm: int
) -> dict[str, Any]:
    """Delay from each visit's first frame (delivered) to the first result that shows it estimated.

    Counts the visits that begin after the warm-up and end within the run. A visit never shown
    estimated counts as its whole length (a lower bound of its delay) and in ``never``.
    """
    first: dict[tuple[int, int], float] = {}
    for frame in frames:
        for cx, cy, estimated, _ in frame.faces:
            slot = scene.slot_of(cx, cy, frame.index)
            if estimated and scene.visible(slot, frame.index):
                first.setdefault((slot, scene.episode(slot, frame.index)), frame.timestamp)
    visits = scene.episodes(warm, len(times))
    delays = [first[v] - times[v[1]] if v in first else scene.on_s for v in visits]
    return {
        "episodes": len(visits),
        "never": sum(v not in first for v in visits),
        "delay_s": percentiles(delays),
    }


def summarise_live(
    frames: Sequence[LiveFrame],
    cameras: Mapping[str | None, PacedCamera],
    warm: int,
    come_and_go: ComeAndGo | None = None,
) -> dict[str, Any]:
    """One round's numbers, from the frames each camera delivered after its first ``warm`` ones.

    Dropped share: per camera, one less the results over the frames it delivered (the worst
    camera is ``dropped_share``). Latency: capture to result. Estimate age: over the estimated
    faces. Without estimate: the share of faces in results that carry none.
    """
    window = [f for f in frames if f.index >= warm]
    dropped = {}
    for name, camera in cameras.items():
        offered = len(camera.times) - warm
        got = sum(1 for f in window if f.source == name)
        dropped[str(name)] = 1.0 - got / offered if offered > 0 else None
    faces = [face for f in window for face in f.faces]
    shares = [d for d in dropped.values() if d is not None]
    summary: dict[str, Any] = {
        "results": len(window),
        "dropped_share": max(shares) if shares else None,
        "dropped_by_camera": dropped,
        "latency_ms": percentiles(f.latency_ms for f in window),
        "estimate_age_s": percentiles(face[3] for face in faces if face[2]),
        "unestimated_share": sum(not face[2] for face in faces) / len(faces) if faces else None,
        "faces_per_frame": len(faces) / len(window) if window else 0.0,
        "delivered_fps": min((c.delivered_fps or 0.0) for c in cameras.values()),
    }
    if come_and_go is not None:
        (camera,) = cameras.values()
        summary["first_estimate"] = first_estimates(window, camera.times, come_and_go, warm)
    return summary


def worst(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each number the worst of its rounds (the highest, or the lowest for :data:`LOWER_IS_WORSE`).

    Nested mappings are combined key by key; ``None`` (nothing measured) is worst of all.
    """
    out: dict[str, Any] = {}
    for key in rounds[0]:
        values = [r.get(key) for r in rounds]
        if isinstance(values[0], Mapping):
            out[key] = worst(values)
        elif any(v is None for v in values):
            out[key] = None
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = min(values) if key in LOWER_IS_WORSE else max(values)
        else:
            out[key] = values[0]
    return out


@dataclass(frozen=True, slots=True)
class LiveCase:
    """One live scenario: ``cameras`` paced cameras showing ``video`` at ``fps`` (one stream or ``streams``)."""

    name: str
    video: Path
    fps: float
    cameras: int = 1
    come_and_go: ComeAndGo | None = None


def run_live(analyzer: Any, case: LiveCase, warmup_s: float, live_s: float) -> dict[str, Any]:
    """One round of a live case: ``warmup_s`` then ``live_s`` seconds of camera frames, every result.

    Returns :func:`summarise_live`'s numbers and, under ``stages``, the run's backbone calls
    (crops a second, ms and crops per call) and mean detect ms (warm-up included).
    """
    warm = round(warmup_s * case.fps)
    count = warm + max(1, round(live_s * case.fps))
    analyzer.reset_stats()
    cameras: dict[str | None, PacedCamera]
    start = time.perf_counter()
    if case.cameras == 1:
        cameras = {None: PacedCamera(case.video, case.fps, count)}
        frames = consume_live(analyzer.stream(cameras[None], live=True, queue_size=1))
    else:
        named = {f"camera{i}": PacedCamera(case.video, case.fps, count) for i in range(case.cameras)}
        cameras = dict(named)
        with analyzer.streams(named, live=True, queue_size=1) as multi:
            frames = consume_live(multi)
            if multi.errors:
                raise RuntimeError(f"live sources failed: {multi.errors}")
    wall = time.perf_counter() - start
    stats = analyzer.stats()
    calls = stats.get("classify", {})
    crops = stats.get("classified_faces", {}).get("count", 0.0)
    summary = summarise_live(frames, cameras, warm, case.come_and_go)
    summary["stages"] = {
        "crops_per_s": crops / wall,
        "ms_per_call": calls.get("mean"),
        "crops_per_call": crops / calls["count"] if calls.get("count") else None,
        "detect_ms": stats.get("detect", {}).get("mean"),
    }
    return summary
