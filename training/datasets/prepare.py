"""Prepare a dataset: read its records, cut face crops with the SDK's detector and crop functions,
write the crops, seeded stratified splits as manifest CSVs, ``no_face.txt``, ``report.json`` and
``prepare.json``.

Crops are made by :func:`facesdk.faces.crop_face` (the function the Analyzer calls), from the
detector's landmarks (``align5``) or a square around a box (``box``). Work runs in a process
pool; crops already on disk are kept, so an interrupted run resumes where it stopped. The
manifests and ``prepare.json`` are written atomically at the end.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facesdk.contract.manifest_io import atomic_write_bytes, atomic_write_json, sha256_file
from facesdk.errors import ConfigError
from facesdk.preprocess import CropPolicy, Preprocess
from facesdk.progress import progress_bar
from facesdk.results import Detection

from .manifest import PREPARE_FILE, stratified_split, write_manifest
from .readers import get_dataset
from .records import FaceRecord, ReadReport, label_counts

__all__ = ["PrepareOptions", "PrepareResult", "prepare_dataset", "box_iou", "choose_face"]

log = logging.getLogger(__name__)

PREPARE_SCHEMA_VERSION = 1
CROPS_DIR = "crops"
NO_FACE_FILE = "no_face.txt"
REPORT_FILE = "report.json"


@dataclass(frozen=True, slots=True)
class PrepareOptions:
    """How crops are made and split.

    Attributes:
        crop: ``"align5"`` (detector landmarks; for datasets with boxes the detection that
            overlaps the given box most) or ``"box"`` (the given box, else the detection box).
        size: Crop side in pixels; use the model's input size for exact train/serve parity.
        margin: Context around the face (see :class:`facesdk.preprocess.CropPolicy`).
        interpolation: Warp interpolation (see :class:`facesdk.preprocess.Preprocess`).
        workers: Worker processes; 0 runs in this process.
        seed: Seed of the train/validation split.
        val_fraction: Share of each stratum that goes to validation.
        image_format: ``"jpg"`` (quality 95) or ``"png"``.
        detector: YuNet ONNX file, or ``None`` for the SDK's model lookup.
        min_iou: Least IoU between a detection and a given box for ``align5`` to use it.
        options: Reader options (``images`` for RAF-DB, ``annotations`` for VggFace2).
    """

    crop: str = "align5"
    size: int = 384
    margin: float = 0.4
    interpolation: str = "bicubic"
    workers: int = 0
    seed: int = 0
    val_fraction: float = 0.2
    image_format: str = "jpg"
    detector: str | None = None
    min_iou: float = 0.3
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.crop not in ("align5", "box"):
            raise ConfigError(f"--crop must be 'align5' or 'box', got {self.crop!r}")
        if self.image_format not in ("jpg", "png"):
            raise ConfigError(f"image format must be 'jpg' or 'png', got {self.image_format!r}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")

    def preprocess(self) -> Preprocess:
        return Preprocess(
            input_size=(self.size, self.size),
            interpolation=self.interpolation,
            crop=CropPolicy(kind=self.crop, margin=self.margin),
        )


@dataclass(frozen=True, slots=True)
class PrepareResult:
    """What a run produced: manifest paths by split, counts by status, reader issues."""

    out: Path
    manifests: dict[str, Path]
    status: dict[str, int]
    issues: int


def _overlap(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(IoU, intersection over the smaller box) of two ``(x, y, w, h)`` boxes."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    smaller = min(a[2] * a[3], b[2] * b[3])
    return (inter / union if union > 0 else 0.0), (inter / smaller if smaller > 0 else 0.0)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x, y, w, h)`` boxes."""
    return _overlap(a, b)[0]


MIN_COVER = 0.8
"""A detection also matches a given box when the smaller of the two lies this much inside the
other: VggFace2's loose boxes are much larger than the detector's tight face box."""


def choose_face(
    detections: Sequence[Detection], box: Sequence[float] | None, min_iou: float
) -> tuple[Detection | None, str]:
    """The subject's face: the detection with the best IoU with the given box, else the largest.

    A detection matches the box when their IoU is at least ``min_iou`` or one lies at least
    :data:`MIN_COVER` inside the other.
    """
    if not detections:
        return None, "no face detected"
    if box is None:
        return max(detections, key=lambda d: d.box[2] * d.box[3]), ""
    scored = [(_overlap(d.box, box), d) for d in detections]
    matching = [(iou, d) for (iou, cover), d in scored if iou >= min_iou or cover >= MIN_COVER]
    if not matching:
        best = max(iou for (iou, _), _ in scored)
        return None, f"no detection overlaps the given box (best IoU {best:.2f} < {min_iou})"
    return max(matching, key=lambda item: item[0])[1], ""


# Per-process state of the pool workers: (spec, detector or None, crop kind, min IoU, format).
_STATE: dict[str, Any] = {}


def _init_worker(spec_json: dict[str, Any], detector: str | None, min_iou: float, fmt: str) -> None:
    cv2.setNumThreads(1)
    _STATE.clear()
    _STATE.update(spec=Preprocess.from_json(spec_json), min_iou=min_iou, fmt=fmt, detector=None)
    if detector is not None:
        from facesdk.faces import FaceDetector

        _STATE["detector"] = FaceDetector(detector if detector != "auto" else None)


def _crop_one(job: tuple[int, str, tuple[float, ...] | None, str]) -> tuple[int, str, str]:
    """Make one crop; returns ``(index, status, detail)`` with status ok/cached/no_face/unreadable."""
    from facesdk.faces import crop_face

    index, image_path, box, out_path = job
    if os.path.exists(out_path):
        return index, "cached", ""
    frame = cv2.imread(image_path, cv2.IMREAD_COLOR)
    if frame is None:
        return index, "unreadable", "image missing or not decodable"
    spec: Preprocess = _STATE["spec"]
    if spec.crop.kind == "box" and box is not None:
        face: Detection | None = Detection(box=tuple(box), score=1.0, landmarks=())  # type: ignore[arg-type]
        reason = ""
    else:
        face, reason = choose_face(_STATE["detector"].detect(frame), box, _STATE["min_iou"])
    if face is None:
        return index, "no_face", reason
    crop = crop_face(frame, face, spec)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if _STATE["fmt"] == "jpg" else []
    ok, data = cv2.imencode(f".{_STATE['fmt']}", crop, params)
    if not ok:
        return index, "unreadable", "could not encode the crop"
    atomic_write_bytes(out_path, np.asarray(data).tobytes())
    return index, "ok", ""


def _run_jobs(
    jobs: list[Any], options: PrepareOptions, detector: str | None, desc: str
) -> list[tuple[int, str, str]]:
    init = (options.preprocess().to_json(), detector, options.min_iou, options.image_format)
    if options.workers <= 1:
        _init_worker(*init)
        return [_crop_one(job) for job in progress_bar(jobs, desc=desc, unit="img")]
    ctx = mp.get_context("spawn")
    with ctx.Pool(options.workers, initializer=_init_worker, initargs=init) as pool:
        chunk = max(1, min(64, len(jobs) // (options.workers * 8) or 1))
        return list(
            progress_bar(
                pool.imap_unordered(_crop_one, jobs, chunksize=chunk), total=len(jobs), desc=desc, unit="img"
            )
        )


def _check_resume(out: Path, info: dict[str, Any]) -> None:
    """Refuse to mix crops made with another spec into an existing output folder."""
    path = out / PREPARE_FILE
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    for key in ("dataset", "preprocess"):
        if old.get(key) != info[key]:
            raise ConfigError(
                f"{out} holds crops prepared with {key} {old.get(key)!r}, not {info[key]!r}; "
                "use another --out folder or delete it"
            )


def _split(records: list[FaceRecord], options: PrepareOptions) -> dict[str, list[int]]:
    test = [i for i, r in enumerate(records) if r.split == "test"]
    rest = [i for i, r in enumerate(records) if r.split != "test"]
    train, val = stratified_split([records[i].labels() for i in rest], options.val_fraction, options.seed)
    splits = {"train": [rest[i] for i in train], "val": [rest[i] for i in val]}
    if test:
        splits["test"] = test
    splits["all"] = list(range(len(records)))  # every crop: for sets used only to evaluate
    return splits


def prepare_dataset(
    name: str, root: str | os.PathLike[str], out: str | os.PathLike[str], options: PrepareOptions
) -> PrepareResult:
    """Prepare dataset ``name`` from ``root`` into ``out`` (see the module docstring)."""
    dataset = get_dataset(name)
    root, out = Path(root).resolve(), Path(out)
    report = ReadReport(dataset.name)
    records = dataset.reader(root, report, **dict(options.options))
    keys = Counter(r.key for r in records)
    if dupes := [k for k, n in keys.items() if n > 1]:
        raise ConfigError(f"{dataset.title}: {len(dupes)} faces share a name, e.g. {dupes[:3]}")
    log.info("%s: %d faces read, %d issues", dataset.title, len(records), len(report))

    spec = options.preprocess()
    needs_detector = options.crop == "align5" or any(r.box is None for r in records)
    detector_path = None
    if needs_detector:
        from facesdk.faces import find_detector_model

        detector_path = str(find_detector_model(options.detector))
    info: dict[str, Any] = {
        "kind": "facesdk-prepared-dataset",
        "schema_version": PREPARE_SCHEMA_VERSION,
        "dataset": dataset.name,
        "title": dataset.title,
        "root": str(root),
        "preprocess": spec.to_json(),
        "options": {k: v for k, v in asdict(options).items() if k not in ("workers", "detector")},
        "detector": {"model": detector_path, "sha256": sha256_file(detector_path)} if detector_path else None,
        "complete": False,
    }
    _check_resume(out, info)
    atomic_write_json(out / PREPARE_FILE, info)

    crop_paths = [out / CROPS_DIR / f"{r.key}.{options.image_format}" for r in records]
    jobs = [(i, str(r.image), r.box, str(crop_paths[i])) for i, r in enumerate(records)]
    results = _run_jobs(jobs, options, detector_path, f"prepare {dataset.name}")
    status = {i: (s, d) for i, s, d in results}
    _write_outputs(out, dataset.name, records, crop_paths, status, report, options, info)
    counts = Counter(s for s, _ in status.values())
    manifests = {s: out / f"{s}.csv" for s in info["splits"]}
    return PrepareResult(out, manifests, dict(counts), len(report))


def _write_outputs(
    out: Path,
    name: str,
    records: list[FaceRecord],
    crop_paths: list[Path],
    status: dict[int, tuple[str, str]],
    report: ReadReport,
    options: PrepareOptions,
    info: dict[str, Any],
) -> None:
    failed = sorted(i for i, (s, _) in status.items() if s not in ("ok", "cached"))
    lines = [f"{records[i].image}\t{status[i][0]}\t{status[i][1]}" for i in failed]
    atomic_write_bytes(out / NO_FACE_FILE, ("\n".join(lines) + "\n" if lines else "").encode())
    if failed:
        log.warning(
            "%s: %d of %d images gave no crop; listed in %s",
            name,
            len(failed),
            len(records),
            out / NO_FACE_FILE,
        )
    splits = {}
    for split, indices in _split(records, options).items():
        rows = [
            (crop_paths[i].relative_to(out).as_posix(), *records[i].labels())
            for i in indices
            if status[i][0] in ("ok", "cached")
        ]
        path = out / f"{split}.csv"
        write_manifest(path, rows)
        splits[split] = {"file": path.name, "rows": len(rows), "sha256": sha256_file(path)}
    atomic_write_json(
        out / REPORT_FILE,
        {
            "status": dict(Counter(s for s, _ in status.values())),
            "labels": label_counts(
                [records[i] for i in range(len(records)) if status[i][0] in ("ok", "cached")]
            ),
            "reader": report.to_json(),
        },
    )
    info.update(splits=splits, no_face=len(failed), issues=len(report), complete=True)
    atomic_write_json(out / PREPARE_FILE, info)
