"""Collect a calibration set: face crops made by the SDK's own detect -> crop -> preprocess path.

Sources are image folders, single images, video files and dataset manifests (CSV with
``path,age_group,gender,emotion``; paths relative to the CSV; empty label = missing). Every
frame goes through :class:`facesdk.faces.FaceDetector`, :func:`facesdk.faces.crop_faces` and
:func:`facesdk.preprocess.to_input_tensor`, the functions the Analyzer calls. Sources marked as
already-cropped faces (``--crops`` on the command line, or a CSV column ``cropped`` set to
1/true) skip detection and take the crop policy ``full`` path of :func:`facesdk.faces.crop_face`
(the whole image resized with the model's interpolation).

Sampling: each source's items are ordered (labelled rows round-robin over their label
combinations, other images shuffled with a fixed seed, video frames evenly spaced) and the
sources are interleaved, so any prefix of the plan is balanced across sources and classes.
Collection stops at ``count`` crops. Shards are written whole, each followed by
``calib.json``; re-running the same command continues after the last complete shard.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facesdk.contract.manifest_io import FileEntry, atomic_write_bytes, sha256_file
from facesdk.errors import ConfigError, InvalidFrameError, ManifestError, SourceError
from facesdk.faces import FaceDetector, crop_face, crop_faces
from facesdk.preprocess import CropPolicy, Preprocess, to_input_tensor
from facesdk.progress import progress_bar
from facesdk.tasks import DEFAULT_TASKS, MISSING, TaskSpec

from .calibset import CALIB_MANIFEST, CalibrationSet, Shard, load_calibration_set

__all__ = ["Source", "PlanItem", "build_plan", "collect", "IMAGE_EXTS", "VIDEO_EXTS"]

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
CSV_COLUMNS = {"age": "age_group", "gender": "gender", "emotion": "emotion"}


@dataclass(frozen=True, slots=True)
class Source:
    """A path to collect from; ``cropped`` marks images that already are face crops."""

    path: Path
    cropped: bool = False


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One frame to read: source index, file, frame index (-1 for images), labels, crop path."""

    source: int
    path: str
    frame: int
    labels: tuple[int, ...]
    cropped: bool

    def to_json(self) -> list[Any]:
        return [self.source, self.path, self.frame, list(self.labels), self.cropped]


def _source_kind(path: Path) -> str:
    if path.is_dir():
        return "images"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "dataset"
    if suffix in VIDEO_EXTS:
        return "video"
    if suffix in IMAGE_EXTS:
        return "image"
    raise ConfigError(
        f"source {path}: expected a folder, an image ({IMAGE_EXTS}), a video ({VIDEO_EXTS}) or a .csv"
    )


def _label(value: str, task: TaskSpec, where: str) -> int:
    value = (value or "").strip()
    if not value:
        return MISSING
    try:
        return task.check_index(int(value))
    except ValueError as exc:
        raise ConfigError(
            f"{where}: label {value!r} for {task.name} is not a class index 0..{task.num_classes - 1}"
        ) from exc


def _dataset_items(
    index: int, src: Source, tasks: Sequence[TaskSpec], rng: np.random.Generator
) -> list[PlanItem]:
    with open(src.path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "path" not in rows[0]:
        raise ConfigError(f"{src.path}: a dataset manifest needs a 'path' column, found {list(rows[0])}")
    groups: dict[tuple[int, ...], list[PlanItem]] = {}
    for n, row in enumerate(rows, start=2):
        labels = tuple(
            _label(row.get(CSV_COLUMNS.get(t.name, t.name), ""), t, f"{src.path}:{n}") for t in tasks
        )
        cropped = src.cropped or row.get("cropped", "").strip().lower() in ("1", "true", "yes")
        path = str((src.path.parent / row["path"]).resolve())
        groups.setdefault(labels, []).append(PlanItem(index, path, -1, labels, cropped))
    return _balance(groups, len(tasks), rng)


def _balance(
    groups: dict[tuple[int, ...], list[PlanItem]], ntasks: int, rng: np.random.Generator
) -> list[PlanItem]:
    """Order labelled items so that every prefix spreads over the classes of every task.

    Greedy: the next item comes from the label combination whose classes have been taken least
    so far (summed over tasks; a missing label counts as a class of its own).
    """
    keys = [k for k in sorted(groups)]
    keys = [keys[i] for i in rng.permutation(len(keys))]
    queues = [[groups[k][i] for i in rng.permutation(len(groups[k]))] for k in keys]
    label_idx = np.array(keys, dtype=np.int64).reshape(len(keys), ntasks) + 1  # -1 (missing) -> 0
    counts = np.zeros((ntasks, int(label_idx.max(initial=0)) + 1), dtype=np.int64)
    left = np.array([len(q) for q in queues], dtype=np.int64)
    pos = np.zeros(len(keys), dtype=np.int64)
    out: list[PlanItem] = []
    cols = np.arange(ntasks)
    for _ in range(int(left.sum())):
        score = counts[cols, label_idx].sum(axis=1) if ntasks else np.zeros(len(keys))
        score = np.where(left > 0, score, np.iinfo(np.int64).max)
        g = int(np.argmin(score))
        out.append(queues[g][pos[g]])
        pos[g] += 1
        left[g] -= 1
        counts[cols, label_idx[g]] += 1
    return out


def _video_items(index: int, src: Source, per_video: int, ntasks: int) -> list[PlanItem]:
    cap = cv2.VideoCapture(str(src.path))
    if not cap.isOpened():
        raise SourceError(f"cannot open video {src.path}; check the file and that OpenCV has its codec")
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if total <= 0:
        raise SourceError(f"video {src.path} reports no frames")
    frames = np.unique(np.linspace(0, total - 1, num=min(per_video, total)).round().astype(int))
    none = (MISSING,) * ntasks
    return [PlanItem(index, str(src.path.resolve()), int(f), none, src.cropped) for f in frames]


def _interleave(lists: Sequence[Sequence[PlanItem]]) -> list[PlanItem]:
    out: list[PlanItem] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


def build_plan(
    sources: Sequence[Source],
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    frames_per_video: int = 256,
    seed: int = 0,
) -> list[PlanItem]:
    """Order every frame of every source so that any prefix is balanced across sources and classes."""
    rng = np.random.default_rng(seed)
    per_source = []
    none = (MISSING,) * len(tasks)
    for i, src in enumerate(sources):
        if not src.path.exists():
            raise SourceError(f"source {src.path} does not exist")
        kind = _source_kind(src.path)
        if kind == "dataset":
            items = _dataset_items(i, src, tasks, rng)
        elif kind == "video":
            items = _video_items(i, src, frames_per_video, len(tasks))
        else:
            files = (
                [src.path]
                if kind == "image"
                else sorted(p for p in src.path.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
            )
            items = [
                PlanItem(i, str(files[j].resolve()), -1, none, src.cropped)
                for j in rng.permutation(len(files))
            ]
        if not items:
            raise SourceError(f"source {src.path} holds no images or frames")
        per_source.append(items)
    return _interleave(per_source)


def _read(item: PlanItem) -> np.ndarray | None:
    if item.frame < 0:
        return cv2.imread(item.path, cv2.IMREAD_COLOR)
    cap = cv2.VideoCapture(item.path)
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, item.frame)
        ok, frame = cap.read()
    finally:
        cap.release()
    return frame if ok else None


def _crops(
    item: PlanItem, frame: np.ndarray, detector: Any, spec: Preprocess, full: Preprocess
) -> list[np.ndarray]:
    """The crops of one frame, made by the same functions as the Analyzer."""
    if item.cropped:
        return [crop_face(frame, None, full)]
    return crop_faces(frame, detector.detect(frame), spec)


def _plan_id(plan: Sequence[PlanItem], count: int, spec: Preprocess, shard_size: int, detector: str) -> str:
    text = json.dumps([[p.to_json() for p in plan], count, spec.fingerprint(), shard_size, detector])
    return hashlib.sha256(text.encode()).hexdigest()


def _write_shard(
    out: Path, index: int, crops: list[np.ndarray], labels: list[tuple[int, ...]], spec: Preprocess
) -> tuple[FileEntry, FileEntry]:
    entries = []
    for name, array in (
        (f"crops-{index:05d}.npy", to_input_tensor(crops, spec)),
        (f"labels-{index:05d}.npy", np.asarray(labels, dtype=np.int64).reshape(len(labels), -1)),
    ):
        buf = _npy_bytes(array)
        atomic_write_bytes(out / name, buf)
        entries.append(FileEntry.of(out, name))
    return entries[0], entries[1]


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _resume(out: Path, plan_id: str) -> CalibrationSet | None:
    if not (out / CALIB_MANIFEST).is_file():
        return None
    calib = load_calibration_set(out, verify=True, require_complete=False)
    if calib.plan_id != plan_id:
        raise ManifestError(
            f"{out} holds a calibration set collected with other sources, count, shard size, detector or "
            "preprocessing; pass another --out, or delete the directory to start over"
        )
    return calib


def _detector_id(plan: Sequence[PlanItem], detector: Any) -> tuple[Any, str]:
    """Open the detector if any planned frame needs one; return it and its identity for the plan id."""
    if all(item.cropped for item in plan):
        return None, "none"
    if detector is None or isinstance(detector, (str, os.PathLike)):
        detector = FaceDetector(detector)
    path = getattr(detector, "model_path", None)
    return detector, sha256_file(path) if path else type(detector).__name__


class _Collection:
    """The state of one collection run: shards written so far, per-source counts, the open buffer."""

    def __init__(
        self,
        out: Path,
        spec: Preprocess,
        tasks: Sequence[TaskSpec],
        plan: Sequence[PlanItem],
        plan_id: str,
        count: int,
        previous: CalibrationSet | None,
        sources: Sequence[Source],
    ) -> None:
        self.out, self.spec, self.tasks, self.plan, self.plan_id, self.count = (
            out,
            spec,
            tasks,
            plan,
            plan_id,
            count,
        )
        self.full = replace(spec, crop=CropPolicy("full", spec.crop.margin))
        self.shards = list(previous.shards) if previous else []
        self.records = (
            [dict(r) for r in previous.sources]
            if previous
            else [
                {
                    "path": str(s.path),
                    "cropped": s.cropped,
                    "kind": _source_kind(s.path),
                    "planned": 0,
                    "frames": 0,
                    "no_face": 0,
                    "unreadable": 0,
                    "crops": 0,
                }
                for s in sources
            ]
        )
        for i, rec in enumerate(self.records):
            rec["planned"] = sum(1 for item in plan if item.source == i)
        self.cursor = self.shards[-1].plan_end if self.shards else 0
        self.total = sum(s.count for s in self.shards)
        self.crops: list[np.ndarray] = []
        self.labels: list[tuple[int, ...]] = []
        self.no_face = 0

    def frame_crops(self, item: PlanItem, detector: Any) -> list[np.ndarray]:
        """Read one planned frame and crop its faces, counting unreadable and face-less frames."""
        rec = self.records[item.source]
        frame = _read(item)
        try:
            crops = [] if frame is None else _crops(item, frame, detector, self.spec, self.full)
        except InvalidFrameError as exc:
            log.warning("skipped %s: %s", item.path, exc)
            frame = None
        if frame is None:
            rec["unreadable"] += 1
            log.warning("cannot read %s (frame %d); skipped", item.path, item.frame)
            return []
        crops = crops[: self.count - self.total - len(self.crops)]
        rec["frames"] += 1
        rec["no_face"] += not crops
        self.no_face += not crops
        rec["crops"] += len(crops)
        self.crops += crops
        self.labels += [item.labels] * len(crops)
        return crops

    def flush(self) -> None:
        """Write the buffered crops as the next shard, then the manifest (both atomically)."""
        if not self.crops:
            return
        c, lab = _write_shard(self.out, len(self.shards), self.crops, self.labels, self.spec)
        self.shards.append(Shard(c, lab, len(self.crops), self.cursor, self.no_face))
        self.total += len(self.crops)
        self.crops, self.labels, self.no_face = [], [], 0
        self.snapshot(False)

    def snapshot(self, complete: bool) -> CalibrationSet:
        frames = {
            k: sum(r[k if k != "read" else "frames"] for r in self.records)
            for k in ("read", "no_face", "unreadable")
        }
        frames["planned"] = len(self.plan)
        made = CalibrationSet(
            self.spec,
            tuple(t.name for t in self.tasks),
            tuple(self.records),
            tuple(self.shards),
            self.count,
            self.plan_id,
            complete,
            frames,
        )
        made.write(self.out)
        return made


def _nothing_collected(records: Sequence[dict[str, Any]]) -> str:
    """The one-line refusal of a collection that found no crop at all (nothing was written)."""
    parts = [
        f"{r['path']}: {r['unreadable']} unreadable, {r['no_face']} without a face of {r['planned']} planned"
        for r in records
    ]
    return (
        f"no face crop could be collected ({'; '.join(parts)}), so nothing was written. Give sources with "
        "readable images (" + ", ".join(IMAGE_EXTS) + ") or videos that show faces, or --crops for face crops"
    )


def collect(
    sources: Sequence[Source],
    out: str | os.PathLike[str],
    spec: Preprocess,
    *,
    count: int = 512,
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    detector: Any = None,
    shard_size: int = 64,
    frames_per_video: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> CalibrationSet:
    """Collect ``count`` crops into ``out`` (resuming a previous run of the same command).

    Args:
        sources: Folders, images, videos or dataset CSVs (see the module docstring).
        out: The calibration directory.
        spec: The model's preprocessing spec (size, normalisation, crop policy).
        count: Crops to collect (fewer if the sources run out; the manifest says so).
        tasks: Label columns of dataset manifests.
        detector: A ``FaceDetector`` (or anything with ``detect(frame)``), a YuNet model path,
            or ``None`` for the SDK's documented lookup. Unused when every source is cropped.
        shard_size: Crops per shard (the unit of resumption).
        frames_per_video: Evenly spaced frames planned per video.
        seed: Seed of the sampling order.
        progress: Show a progress bar (drawn only when stderr is a terminal).
    """
    if count < 1 or shard_size < 1:
        raise ConfigError(f"count and shard_size must be >= 1, got {count} and {shard_size}")
    out = Path(out)  # created by the first shard written: a run that collects nothing leaves no folder
    plan = build_plan(sources, tasks, frames_per_video, seed)
    detector, det_id = _detector_id(plan, detector)
    plan_id = _plan_id(plan, count, spec, shard_size, det_id)
    previous = _resume(out, plan_id)
    if previous is not None and previous.complete:
        log.info("%s already holds a complete calibration set (%d crops)", out, previous.count)
        return previous
    run = _Collection(out, spec, tasks, plan, plan_id, count, previous, sources)
    bar = progress_bar(
        total=count, initial=run.total, desc="calibration crops", unit="crop", disable=not progress
    )
    try:
        while run.cursor < len(plan) and run.total < count:
            item = plan[run.cursor]
            run.cursor += 1
            bar.update(len(run.frame_crops(item, detector)))
            bar.set_postfix(no_face=sum(r["no_face"] for r in run.records))
            if len(run.crops) >= shard_size or run.total + len(run.crops) >= count or run.cursor == len(plan):
                run.flush()
    finally:
        bar.close()
    run.flush()  # the plan ended right after unreadable frames
    if run.total == 0:
        raise SourceError(_nothing_collected(run.records))
    result = run.snapshot(True)
    if run.total < count:
        log.warning("sources ran out: %d of %d crops collected", run.total, count)
    log.info(
        "calibration set %s: %d crops, %d frames without a face", out, run.total, result.frames["no_face"]
    )
    return result
