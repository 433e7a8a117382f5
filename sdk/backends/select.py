"""``backend="auto"`` on a CPU: the fastest path this machine has among those checked against FP32.

A *path* is a runtime, one of the export's model files and a precision mode: ONNX Runtime FP32 or
INT8 (the Q/DQ file), OpenVINO FP32, BF16 (an execution mode of the FP32 file, on CPUs with
AVX-512 BF16 or AMX), INT8 (the Q/DQ file, float parts in FP32 or BF16). On first use
:func:`choose_cpu_path` times every *approved* path for a short while and keeps the fastest; the
choice is cached per model file hash and CPU signature (model name, ISA flags, runtime versions)
under ``$FACESDK_HOME/auto`` (else ``~/.cache/facesdk/auto``).

A path is approved only when its top-1 agreement with FP32 was checked on face crops and is at
least :data:`THRESHOLD` on every task:

* FP32 paths compute what the reference computes (OpenVINO f32 matches ONNX Runtime within 1e-4,
  ``tests/sdk/test_openvino.py``);
* ONNX Runtime INT8: the calibration gate's record in ``export.json`` (``extra.calibration``);
* OpenVINO BF16 and INT8: the export's record (``extra.openvino_bf16`` of ``onnx-fp32``, written when
  the exporting CPU had BF16) or, failing that, a measurement at the first ``auto`` on this CPU
  on face crops from scikit-image's ``lfw_subset`` through the model's preprocessing, kept in the
  cache. Without scikit-image such a path is not checked and never chosen.

The cache is verified like any other file: its digest, its model hash and CPU signature, and the
chosen path must be one this export and this machine approve. A damaged or foreign cache is
ignored with a warning and measured again. An explicit backend, precision or backend option
bypasses all of this (``facesdk.model_loader``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, FaceSdkError
from ..export_manifest import ExportManifest
from ..manifest_io import atomic_write_json
from .base import Backend, create_backend, run_batched

__all__ = [
    "THRESHOLD",
    "CpuPath",
    "Choice",
    "auto_cache_dir",
    "cpu_signature",
    "candidate_paths",
    "choose_cpu_path",
    "face_crops",
]

logger = logging.getLogger(__name__)

THRESHOLD = 0.98
"""Lowest top-1 agreement with FP32, on every task, for a path ``auto`` may choose."""

CACHE_KIND = "facesdk-auto-choice"
CACHE_SCHEMA = 1
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
TIMED_BATCHES = (1, 8)


@dataclass(frozen=True, slots=True)
class CpuPath:
    """One way to run the export on this CPU.

    Attributes:
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        model_key: The export's model (``"onnx-fp32"`` or ``"onnx-int8"``).
        hint: OpenVINO's inference precision for float operations (``"f32"``, ``"bf16"``); None for ORT.
    """

    runtime: str
    model_key: str
    hint: str | None = None

    @property
    def name(self) -> str:
        precision = self.model_key.split("-", 1)[1]
        if self.runtime == "openvino" and self.hint == "bf16":
            precision = "bf16" if precision == "fp32" else f"{precision}+bf16"
        return f"{self.runtime} {precision}"

    @property
    def exact(self) -> bool:
        """FP32 arithmetic on the FP32 file: the reference itself, no agreement check needed."""
        return self.model_key == "onnx-fp32" and self.hint in (None, "f32")

    def options(self) -> dict[str, Any]:
        """Backend options that select this path."""
        if self.runtime == "openvino":
            from .openvino import DEFAULT_BUCKETS

            return {"precision_hint": self.hint, "batch_buckets": DEFAULT_BUCKETS}
        return {}


@dataclass(frozen=True, slots=True)
class Choice:
    """What ``auto`` chose: the path, its file, the backend options, and why."""

    path: CpuPath
    file: Path
    reason: str
    cached: bool
    timings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return self.path.runtime

    @property
    def options(self) -> dict[str, Any]:
        return self.path.options()


def auto_cache_dir() -> Path:
    """``$FACESDK_HOME/auto`` when set, else ``$XDG_CACHE_HOME/facesdk/auto`` (``~/.cache/facesdk/auto``)."""
    home = os.environ.get("FACESDK_HOME")
    if home:
        return Path(home) / "auto"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facesdk" / "auto"


def _openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.__version__).split("-")[0]


def cpu_signature() -> dict[str, Any]:
    """CPU model name and ISA flags, and the runtime versions: what a cached choice depends on."""
    import onnxruntime

    from ..bench.machine import cpu_info  # the one CPU reader; imported late (bench imports backends)

    cpu = cpu_info()
    runtimes = {"onnxruntime": onnxruntime.__version__, "openvino": _openvino_version()}
    return {"model": cpu["model"], "flags": cpu["flags"], "runtimes": runtimes}


def _has_bf16(cpu: Mapping[str, Any]) -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu["flags"]))


def candidate_paths(manifest: ExportManifest, cpu: Mapping[str, Any]) -> list[CpuPath]:
    """Every path the installed runtimes, this CPU and this export's models allow (reference first)."""
    paths = [CpuPath("onnxruntime", "onnx-fp32")]
    int8 = "onnx-int8" in manifest.models
    if int8:
        paths.append(CpuPath("onnxruntime", "onnx-int8"))
    if cpu["runtimes"].get("openvino"):
        paths.append(CpuPath("openvino", "onnx-fp32", "f32"))
        if _has_bf16(cpu):
            paths.append(CpuPath("openvino", "onnx-fp32", "bf16"))
        if int8:
            paths.append(CpuPath("openvino", "onnx-int8", "f32"))
            if _has_bf16(cpu):
                paths.append(CpuPath("openvino", "onnx-int8", "bf16"))
    return paths


def _record_passes(record: Any) -> bool:
    try:
        values = [float(v) for v in record["agreement"].values()]
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return bool(values) and min(values) >= THRESHOLD and record.get("passed", True) is not False


def _export_record(manifest: ExportManifest, path: CpuPath) -> tuple[Any, str] | None:
    """The agreement record the export carries for ``path``, with where it came from."""
    if path == CpuPath("onnxruntime", "onnx-int8"):
        calibration = manifest.models["onnx-int8"].extra.get("calibration")
        return (calibration, "export.json int8 calibration gate") if calibration else None
    if path == CpuPath("openvino", "onnx-fp32", "bf16"):
        record = manifest.models["onnx-fp32"].extra.get("openvino_bf16")
        return (record, "export.json openvino_bf16 (measured at export)") if record else None
    return None


def face_crops(manifest: ExportManifest, count: int = 100) -> np.ndarray | None:
    """Face crops for the agreement check: scikit-image's ``lfw_subset`` faces, preprocessed.

    Returns None when scikit-image is not installed.
    """
    try:
        from skimage import data
    except ImportError:
        return None
    import cv2

    from ..preprocess import to_input_tensor

    faces = data.lfw_subset()[:count]  # the first 100 of the 200 are faces (25 x 25 grey, 0..1)
    bgr = [cv2.cvtColor((f * 255).round().astype(np.uint8), cv2.COLOR_GRAY2BGR) for f in faces]
    return to_input_tensor(bgr, manifest.preprocess)


def _agreement(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {task: float((ref[task].argmax(1) == got[task].argmax(1)).mean()) for task in ref}


Maker = Callable[[CpuPath], Backend]
Timer = Callable[[CpuPath, Backend, ExportManifest], dict[str, float]]


def time_backend(
    path: CpuPath, backend: Backend, manifest: ExportManifest, reps: int = 3
) -> dict[str, float]:
    """Median ms of ``reps`` runs at batch 1 and 8 (after one warm-up run each)."""
    h, w = (int(v) for v in manifest.input.shape[2:])
    out: dict[str, float] = {}
    for batch in (b for b in TIMED_BATCHES if b <= manifest.max_batch):
        x = np.random.default_rng(batch).standard_normal((batch, 3, h, w)).astype(np.float32)
        backend.run(x)
        runs = []
        for _ in range(reps):
            start = time.perf_counter()
            backend.run(x)
            runs.append((time.perf_counter() - start) * 1e3)
        out[str(batch)] = statistics.median(runs)
    return out


def score(timings: Mapping[str, float]) -> float:
    """Milliseconds per face, averaged over batch 1 and the largest timed batch."""
    per_face = [float(ms) / int(b) for b, ms in timings.items()]
    return sum(per_face) / len(per_face)


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _cache_path(directory: Path, model_sha: str, cpu: Mapping[str, Any]) -> Path:
    return directory / f"{model_sha[:16]}-{_digest(cpu)[:12]}.json"


def _read_cache(path: Path, model_sha: str, cpu: Mapping[str, Any]) -> dict[str, Any] | None:
    """The cache body if it is intact and belongs to this model and CPU; None (with a warning) otherwise."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        body = {k: v for k, v in data.items() if k != "digest"}
        problem = (
            "its digest does not match its content" if data.get("digest") != _digest(body)
            else "it is not a facesdk auto-choice cache" if data.get("kind") != CACHE_KIND
            else f"schema {data.get('schema_version')!r}, expected {CACHE_SCHEMA}" if data.get("schema_version") != CACHE_SCHEMA
            else "it was measured for another model" if data.get("model_sha256") != model_sha
            else "it was measured on another CPU or runtime version" if data.get("cpu") != dict(cpu)
            else None
        )  # fmt: skip
    except (OSError, ValueError, AttributeError) as exc:
        problem = f"it cannot be read ({type(exc).__name__}: {exc})"
    if problem:
        logger.warning("ignoring the auto-choice cache %s: %s; measuring again", path, problem)
        return None
    return body


def _approve(
    manifest: ExportManifest,
    paths: list[CpuPath],
    stored: Mapping[str, Any],
    make: Maker,
    crops: np.ndarray | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Agreement record (approved or not) per path; reasons for those left out."""
    records: dict[str, dict[str, Any]] = {}
    left_out: dict[str, str] = {}
    reference = None
    for path in paths:
        if path.exact:
            records[path.name] = {"source": "fp32 (the reference arithmetic)", "passed": True}
            continue
        found = _export_record(manifest, path)
        if found is None and path.name in stored:
            found = (stored[path.name], stored[path.name].get("source", "auto cache"))
        if found is None:
            if crops is None:
                left_out[path.name] = "agreement not checked: no face crops (install scikit-image)"
                continue
            if reference is None:
                with make(CpuPath("onnxruntime", "onnx-fp32")) as ref_backend:  # type: ignore[attr-defined]
                    reference = run_batched(ref_backend, crops)
            try:
                with make(path) as backend:  # type: ignore[attr-defined]
                    got = run_batched(backend, crops)
            except FaceSdkError as exc:  # a runtime that cannot build this path: leave it out
                left_out[path.name] = f"could not run: {exc}"
                continue
            found = ({"agreement": _agreement(reference, got), "samples": len(crops),
                      "crops": "skimage lfw_subset", "source": "measured at first auto"}, "measured at first auto")  # fmt: skip
        record, source = found
        passed = _record_passes(record)
        records[path.name] = {**dict(record), "source": source, "passed": passed}
        if not passed:
            left_out[path.name] = f"agreement {record.get('agreement')} below {THRESHOLD} ({source})"
    return records, left_out


def _time_paths(
    approved: list[CpuPath],
    reference: CpuPath,
    make: Maker,
    timer: Timer,
    manifest: ExportManifest,
    left_out: dict[str, str],
) -> dict[str, dict[str, float]]:
    """Time every approved path; one that cannot run is left out (unless it is the reference)."""
    timings: dict[str, dict[str, float]] = {}
    for path in approved:
        try:
            with make(path) as backend:  # type: ignore[attr-defined]
                timings[path.name] = dict(timer(path, backend, manifest))
        except FaceSdkError as exc:
            if path == reference:
                raise  # the reference itself fails: nothing to compare against
            left_out[path.name] = f"could not run: {exc}"
    return timings


def _write_cache(
    cache: Path,
    model_sha: str,
    cpu: Mapping[str, Any],
    choice: str,
    reason: str,
    timings: Mapping[str, Any],
    measured: Mapping[str, Any],
) -> None:
    body = {
        "kind": CACHE_KIND,
        "schema_version": CACHE_SCHEMA,
        "model_sha256": model_sha,
        "cpu": dict(cpu),
        "choice": choice,
        "reason": reason,
        "timings": dict(timings),
        "agreement": dict(measured),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        atomic_write_json(cache, {**body, "digest": _digest(body)})
    except OSError as exc:  # a read-only home still runs, measuring each time
        logger.warning("could not write the auto-choice cache %s: %s", cache, exc)


def choose_cpu_path(
    directory: str | os.PathLike[str],
    manifest: ExportManifest,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    make: Maker | None = None,
    timer: Timer = time_backend,
    crops: np.ndarray | None | str = "auto",
    cpu: Mapping[str, Any] | None = None,
) -> Choice:
    """Choose (or recall) the fastest approved CPU path for the export in ``directory``.

    Args:
        directory: The export directory.
        manifest: Its (verified) manifest.
        cache_dir: Where choices are cached (default :func:`auto_cache_dir`).
        make: Builds a backend for a path (default: :func:`create_backend` on the path's file).
        timer: Times one backend (default :func:`time_backend`); tests inject fake timings.
        crops: Face crops for agreement checks; ``"auto"`` loads :func:`face_crops` when needed.
        cpu: The CPU signature (default :func:`cpu_signature`).
    """
    directory = Path(directory)
    cpu = dict(cpu or cpu_signature())
    model_sha = manifest.models["onnx-fp32"].file.sha256
    cache = _cache_path(Path(cache_dir) if cache_dir else auto_cache_dir(), model_sha, cpu)
    paths = candidate_paths(manifest, cpu)
    by_name = {p.name: p for p in paths}

    def file_of(path: CpuPath) -> Path:
        return directory / manifest.models[path.model_key].file.path

    make = make or (lambda p: create_backend(p.runtime, manifest, file_of(p), **p.options()))
    body = _read_cache(cache, model_sha, cpu) or {}
    stored = body.get("agreement", {}) if isinstance(body.get("agreement"), dict) else {}
    if isinstance(crops, str):
        needs = any(
            not p.exact and _export_record(manifest, p) is None and p.name not in stored for p in paths
        )
        crops = face_crops(manifest) if needs else None
    records, left_out = _approve(manifest, paths, stored, make, crops)  # type: ignore[arg-type]
    approved = [p for p in paths if records.get(p.name, {}).get("passed")]
    chosen = body.get("choice")
    if chosen is not None and chosen in by_name and by_name[chosen] in approved:
        reason = f"cached choice ({cache.name}): {body.get('reason', '')}"
        logger.info("backend auto: chose %s, %s", chosen, reason)
        return Choice(by_name[chosen], file_of(by_name[chosen]), reason, True, body.get("timings", {}))
    if chosen is not None:
        logger.warning("ignoring the auto-choice cache %s: it chose %r, not approved here", cache, chosen)
    timings = _time_paths(approved, paths[0], make, timer, manifest, left_out)
    best = min((p for p in approved if p.name in timings), key=lambda p: score(timings[p.name]))
    ratio = score(timings[best.name]) / score(timings[paths[0].name])
    skipped = "; ".join(f"{n}: {why}" for n, why in left_out.items())
    reason = (
        f"fastest of {len(timings)} paths checked against FP32 ({score(timings[best.name]):.2f} ms/face, "
        f"{ratio:.2f}x of onnxruntime fp32)" + (f"; not considered: {skipped}" if skipped else "")
    )
    measured = {n: r for n, r in records.items() if r.get("source") == "measured at first auto"}
    _write_cache(cache, model_sha, cpu, best.name, reason, timings, measured)
    logger.info("backend auto: chose %s, %s", best.name, reason)
    return Choice(best, file_of(best), reason, False, timings)


def main(argv: list[str] | None = None) -> int:
    """``python -m facesdk.backends.select EXPORT_DIR``: print what ``auto`` chooses here, and why."""
    import argparse

    from ..export_manifest import load_export_manifest

    parser = argparse.ArgumentParser(prog="python -m facesdk.backends.select", description=main.__doc__)
    parser.add_argument("export", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.export.is_file():
        raise ConfigError(
            f"{args.export} is a file; backend auto chooses among the models of an export directory "
            "(export.json and its models): pass that directory"
        )
    choice = choose_cpu_path(args.export, load_export_manifest(args.export))
    print(f"{choice.path.name}: {choice.reason}")
    return 0


if __name__ == "__main__":
    from ..cli import run_guarded

    raise SystemExit(run_guarded("python -m facesdk.backends.select", main))
