"""Which CPU paths ``backend="auto"`` may choose: agreement with FP32 on face crops, on a Wilson bound.

A path other than FP32 arithmetic on the FP32 file is approved only by a record of its top-1
agreement with ONNX Runtime FP32 on face crops whose Wilson 95% lower bound is at least
:data:`THRESHOLD` on every task (``facesdk.bench.compare``: the one place agreement is computed).
The records come from two places, never from ``auto`` itself:

* the export (``export.json``): ONNX Runtime INT8 from the calibration gate (``extra.calibration``),
  OpenVINO paths from ``extra.openvino_agreement`` (``{hint: record}`` of ``onnx-fp32`` and
  ``onnx-int8``), written for every OpenVINO path the exporting CPU can run;
* :func:`approve` (``python -m facesdk.auto approve --model EXPORT --crops DIR``), run
  once on the device for a path the export could not check (BF16 exported on a CPU without it), on
  the export's calibration set or at least :data:`MIN_APPROVE_CROPS` face crop images. Its records
  live beside the auto cache (``approved-<file sha256>.json``), verified by digest like the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import Backend, run_batched
from ..contract.export_manifest import ExportManifest
from ..contract.manifest_io import FileEntry, atomic_write_json
from ..errors import ConfigError, FaceSdkError, ManifestError, MissingFileError

__all__ = [
    "THRESHOLD",
    "MIN_APPROVE_CROPS",
    "FaceCrops",
    "agreement_record",
    "approval_problem",
    "read_approvals",
    "write_approvals",
]

logger = logging.getLogger(__name__)

THRESHOLD = 0.98
"""Lowest Wilson 95% lower bound of top-1 agreement with FP32, on every task, for an approved path."""

MIN_APPROVE_CROPS = 378
"""Face crops :func:`approve` needs: 189 all agreeing bound agreement at 0.98; the INT8 gate holds
out half its crops, so 378 is also what a calibration set that can pass the export's gate holds."""

APPROVAL_KIND = "facesdk-auto-approval"
APPROVAL_SCHEMA = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CHUNK = 32


def digest(body: Mapping[str, Any]) -> str:
    """The sha256 of a JSON body (keys sorted): what a signed record stores under ``"digest"``."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_signed(path: Path, body: Mapping[str, Any]) -> None:
    """Write ``body`` with its :func:`digest` atomically (what :func:`read_signed` checks)."""
    atomic_write_json(path, {**body, "digest": digest(body)})


def read_signed(
    path: Path, kind: str, schema: int, what: str, mismatch: Callable[[Mapping[str, Any]], str | None]
) -> tuple[dict[str, Any] | None, str | None]:
    """``(body, None)`` of an intact record written by :func:`write_signed`, else ``(None, problem)``.

    A record is intact when its digest matches, its ``kind`` and ``schema_version`` are the ones
    expected, and ``mismatch(body)`` finds nothing (it returns what is wrong, or None).
    """
    try:
        data = json.loads(path.read_text())
        body = {k: v for k, v in data.items() if k != "digest"}
        problem = (
            "its digest does not match its content" if data.get("digest") != digest(body)
            else f"it is not a facesdk {what}" if data.get("kind") != kind
            else f"schema {data.get('schema_version')!r}, expected {schema}" if data.get("schema_version") != schema
            else mismatch(body)
        )  # fmt: skip
    except (OSError, ValueError, AttributeError) as exc:
        return None, f"it cannot be read ({type(exc).__name__}: {exc})"
    return (None, problem) if problem else (body, None)


def agreement_record(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], crops: str, **info: Any
) -> dict[str, Any]:
    """Per-task top-1 agreement, its Wilson 95% lower bound and whether the path passes.

    Args:
        reference: ONNX Runtime FP32 logits per task.
        candidate: The path's logits on the same crops.
        crops: What the crops were (recorded).
        info: Recorded as given (``cpu``, ``openvino``, ``source``...).
    """
    from ..bench.compare import compare_arrays  # imported late: bench imports the backends

    comparison = compare_arrays(reference, candidate, inputs=crops, reference_name="onnxruntime fp32")
    bounds = {t: a.lower_bound for t, a in comparison.tasks.items()}
    return {
        "agreement": {t: a.rate for t, a in comparison.tasks.items()},
        "agreement_lower_bound": bounds,
        "agree": {t: a.agree for t, a in comparison.tasks.items()},
        "samples": comparison.crops,
        "crops": crops,
        "confidence": "Wilson score interval, 95%, lower end",
        "threshold": THRESHOLD,
        "passed": min(bounds.values()) >= THRESHOLD,
        **info,
    }


def approval_problem(record: Any) -> str | None:
    """Why ``record`` does not approve its path (None when it does)."""
    try:
        bounds = {str(t): float(v) for t, v in record["agreement_lower_bound"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return "it records no Wilson lower bound (a point estimate only: re-export, or run approve)"
    if not bounds:
        return "it records no task"
    low = min(bounds, key=bounds.__getitem__)
    if bounds[low] < THRESHOLD or record.get("passed", True) is False:
        return f"Wilson lower bound {bounds[low]:.3f} ({low}) below {THRESHOLD}"
    return None


# ------------------------------------------------------------------------- approvals on disk
def approvals_path(cache_dir: Path, file_sha256: str) -> Path:
    return cache_dir / f"approved-{file_sha256[:16]}.json"


def read_approvals(cache_dir: Path, file_sha256: str) -> dict[str, dict[str, Any]]:
    """``{path name: record}`` approved by :func:`approve` for the model file ``file_sha256``."""
    path = approvals_path(cache_dir, file_sha256)
    if not path.is_file():
        return {}
    body, problem = read_signed(
        path,
        APPROVAL_KIND,
        APPROVAL_SCHEMA,
        "approval record",
        lambda b: "it is for another model file" if b.get("file_sha256") != file_sha256 else None,
    )
    if body is None:
        logger.warning("ignoring the approval record %s: %s; run approve again", path, problem)
        return {}
    paths = body.get("paths")
    return (
        {str(k): dict(v) for k, v in paths.items() if isinstance(v, dict)} if isinstance(paths, dict) else {}
    )


def write_approvals(cache_dir: Path, file_sha256: str, records: Mapping[str, Mapping[str, Any]]) -> Path:
    """Add ``records`` to the approval file of ``file_sha256`` (atomic; the caller holds the lock)."""
    merged = {**read_approvals(cache_dir, file_sha256), **{k: dict(v) for k, v in records.items()}}
    body = {
        "kind": APPROVAL_KIND,
        "schema_version": APPROVAL_SCHEMA,
        "file_sha256": file_sha256,
        "paths": merged,
    }
    path = approvals_path(cache_dir, file_sha256)
    write_signed(path, body)
    return path


# ------------------------------------------------------------------------------- face crops
class FaceCrops:
    """Face crops for :func:`approve`, read in chunks (an edge board cannot hold 378 of them at once).

    ``directory`` is a calibration set (``calib.json``, whose preprocessing must be the model's) or
    a folder of face crop images, each put through the model's preprocessing.
    """

    def __init__(self, directory: str | os.PathLike[str], manifest: ExportManifest) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        if not self.directory.is_dir():
            raise MissingFileError(
                f"--crops {self.directory} is not a folder of face crops or a calibration set"
            )
        self._shards: list[Path] = []
        self._images: list[Path] = []
        if (self.directory / "calib.json").is_file():
            self._shards, self.count = self._calibration_shards()
            self.description = f"calibration set {self.directory.name} ({self.count} crops)"
        else:
            self._images = sorted(p for p in self.directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            self.count = len(self._images)
            self.description = f"face crop images in {self.directory.name} ({self.count})"

    def _calibration_shards(self) -> tuple[list[Path], int]:
        """The set's crop shards (hash-verified); refuses a set made with another preprocessing."""
        from ..preprocess import Preprocess

        where = self.directory / "calib.json"
        try:
            data = json.loads(where.read_text())
            spec = Preprocess.from_json(data["preprocess"])
            entries = [(FileEntry.from_json(s["crops"]), int(s["count"])) for s in data["shards"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ManifestError(
                f"{where} cannot be read as a calibration set ({type(exc).__name__}: {exc})"
            ) from exc
        if spec.fingerprint() != self.manifest.preprocess.fingerprint():
            raise ManifestError(
                f"calibration set {self.directory} was collected with another preprocessing than the model's "
                f"({spec.to_json()} vs {self.manifest.preprocess.to_json()}); collect one for this export"
            )
        return [entry.verify(self.directory) for entry, _ in entries], sum(n for _, n in entries)

    def batches(self) -> Iterator[np.ndarray]:
        """Chunks of preprocessed crops (N x 3 x H x W float32)."""
        for shard in self._shards:
            crops = np.load(shard, mmap_mode="r", allow_pickle=False)
            for start in range(0, len(crops), CHUNK):
                yield np.ascontiguousarray(crops[start : start + CHUNK], dtype=np.float32)
        if self._images:
            import cv2

            from ..preprocess import to_input_tensor

            for start in range(0, len(self._images), CHUNK):
                images = []
                for path in self._images[start : start + CHUNK]:
                    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                    if image is None:
                        raise ConfigError(f"{path} is not an image OpenCV can read; remove it from --crops")
                    images.append(image)
                yield to_input_tensor(images, self.manifest.preprocess)


def logits(backend: Backend, crops: FaceCrops) -> dict[str, np.ndarray]:
    """``backend``'s outputs on every crop, chunk by chunk."""
    parts = [run_batched(backend, chunk) for chunk in crops.batches()]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def approve(
    crops: FaceCrops,
    paths: Sequence[Any],
    make: Callable[[Any], Any],
    reference: Any,
    info: Mapping[str, Any],
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Measure each of ``paths`` against ``reference`` on ``crops``: records, and paths that could not run.

    Raises:
        ConfigError: Fewer than :data:`MIN_APPROVE_CROPS` crops.
    """
    if crops.count < MIN_APPROVE_CROPS:
        raise ConfigError(
            f"approve needs at least {MIN_APPROVE_CROPS} face crops (a Wilson bound of {THRESHOLD} needs "
            f"189 agreeing), found {crops.count} in {crops.directory}: pass the export's calibration set "
            "or a folder with more face crops"
        )
    with make(reference) as ref:
        want = logits(ref, crops)
    records: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for path in paths:
        try:
            with make(path) as backend:
                got = logits(backend, crops)
        except FaceSdkError as exc:
            failed[path.name] = str(exc)
            continue
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        records[path.name] = agreement_record(
            want, got, crops.description, source="approve", created=created, **info
        )
    return records, failed
