"""The calibration set of an int8 export: a given ``--calib`` set, or one collected now.

``facesdk export build --precision int8 --calib-source PHOTOS/ VIDEO ...`` collects face crops
with the checkpoint's own preprocessing (the calibration stage's ``collect``), so INT8 takes
one command. The collected set lives in a hidden directory beside ``--out`` and is removed
after the export unless ``--keep-calib DIR`` asks to keep it (re-running with the same
``--keep-calib`` resumes or reuses it). Either way ``export.json`` records the set's hash
(the sha256 of its ``calib.json``, which lists every shard's sha256) and its collection report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facesdk.contract.manifest_io import sha256_file
from facesdk.outputs import StagedDir
from facesdk.preprocess import Preprocess
from facesdk.tasks import TaskSpec

from .options import ExportOptions

__all__ = ["CalibrationUse", "calibration_set", "set_record"]

log = logging.getLogger(__name__)

CALIB_MANIFEST = "calib.json"


@dataclass(frozen=True, slots=True)
class CalibrationUse:
    """The calibration directory an int8 export quantizes with, and what ``export.json`` records."""

    directory: Path
    record: dict[str, Any] = field(default_factory=dict)


def set_record(directory: Path) -> dict[str, Any]:
    """The set's hash and collection report (counts, frames, sources) from its ``calib.json``."""
    manifest = directory / CALIB_MANIFEST
    if not manifest.is_file():
        return {"dir": str(directory)}  # the quantizer refuses it with the reason
    from facesdk.calibration.calibset import load_calibration_set

    calib = load_calibration_set(directory)
    return {
        "dir": str(directory),
        "sha256": sha256_file(manifest),
        "crops": calib.count,
        "target": calib.target,
        "frames": dict(calib.frames),
        "sources": [dict(s) for s in calib.sources],
    }


def _collect(options: ExportOptions, into: Path, preprocess: Preprocess, tasks: Sequence[TaskSpec]) -> None:
    from facesdk.calibration.collect import Source, collect

    collect(
        [Source(p) for p in options.calib_sources],
        into,
        preprocess,
        count=options.calib_count,
        tasks=tasks,
        detector=options.detector,
    )


@contextmanager
def calibration_set(
    options: ExportOptions, preprocess: Preprocess, tasks: Sequence[TaskSpec]
) -> Iterator[CalibrationUse]:
    """Yield the calibration set of an int8 export (collected now from ``calib_sources``).

    A temporary set is removed when the context ends, whether the export succeeded or not.
    """
    if options.calib is not None:
        yield CalibrationUse(options.calib, {"collected": False, **set_record(options.calib)})
        return
    if options.keep_calib is not None:
        _collect(options, options.keep_calib, preprocess, tasks)
        record = {"collected": True, "kept": str(options.keep_calib), **set_record(options.keep_calib)}
        yield CalibrationUse(options.keep_calib, record)
        return
    # A staging folder that is never committed: removed when the export ends (also on SIGINT or
    # SIGTERM), and by the next run beside it when a kill left it.
    with StagedDir(options.out.parent / f"{options.out.name}.calib") as stage:
        tmp = stage / "set"
        tmp.mkdir()
        _collect(options, tmp, preprocess, tasks)
        record = {"collected": True, "kept": None, **set_record(tmp)}
        record["dir"] = None  # removed after the export; the hash identifies it
        log.info("calibration set collected: %d crops (sha256 %s)", record["crops"], record["sha256"][:16])
        yield CalibrationUse(tmp, record)
