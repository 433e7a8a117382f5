"""``backend="auto"`` on a CPU: the fastest path this machine has among those checked against FP32,
weighed against the memory it holds.

A *path* is a runtime, one of the export's model files and a precision mode: ONNX Runtime FP32 or
INT8 (the Q/DQ file), OpenVINO FP32, BF16 (an execution mode of the FP32 file, on CPUs with
AVX-512 BF16 or AMX), INT8 (the Q/DQ file, float parts in FP32 or BF16).

* **Approval** (:mod:`.approval`): a path other than FP32 arithmetic needs a record of its
  top-1 agreement with FP32 on face crops whose Wilson 95% lower bound is >= :data:`THRESHOLD` on
  every task, written by the export or by ``python -m facesdk.auto approve``; ``auto``
  never approves a path on its own.
* **Timing** (``facesdk.bench``): every approved path runs batch 1 and 8 in its own child process,
  in two alternating rounds (:func:`facesdk.bench.alternate_rounds`); the score is milliseconds per
  face averaged over the two batches. A path replaces the exact FP32 path only when it is at least
  :data:`MARGIN` faster (OpenVINO FP32 must beat ONNX Runtime FP32 by as much to replace it), and
  :data:`MEMORY_MARGIN_PER_100_MIB` faster again per 100 MiB of peak resident memory it holds
  above that path (each timing process's peak, as ``facesdk bench`` reports it).
* **Cache**: ``$FACESDK_HOME/auto`` (else ``~/.cache/facesdk/auto``), keyed by every selectable
  file's sha256, the CPU (model, ISA flags, cores this process may use) and the thread settings
  (intra-op threads, ``OMP_NUM_THREADS`` and the like). A file lock makes concurrent first runs
  wait for one measurement and read it. The cache is verified (digest, key, approved choice); a
  damaged or foreign cache is ignored with a warning and measured again.

An explicit backend, precision or backend option bypasses all of this (``facesdk.model_loader``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..backends.base import create_backend
from ..backends.threads import usable_cores
from ..contract.export_manifest import ExportManifest
from ..errors import BackendError, ConfigError, FaceSdkError, MissingFileError
from .approval import (
    THRESHOLD,
    FaceCrops,
    approval_problem,
    approve,
    digest,
    read_approvals,
    read_signed,
    write_approvals,
    write_signed,
)

__all__ = [
    "MARGIN",
    "MEMORY_MARGIN_PER_100_MIB",
    "THRESHOLD",
    "CpuPath",
    "Choice",
    "auto_cache_dir",
    "cache_key",
    "cpu_signature",
    "candidate_paths",
    "choose_cpu_path",
    "approve_paths",
    "thread_settings",
    "time_paths",
]

logger = logging.getLogger(__name__)

MARGIN = 0.10
"""A path must be this much faster (ms per face) than the exact FP32 path it replaces."""

MEMORY_MARGIN_PER_100_MIB = 0.20
"""What memory costs in speed: for every 100 MiB a path's peak resident memory exceeds that of the
path it replaces, it must be this much faster on top of :data:`MARGIN`.

Measured on the 2-core AMD EPYC (docs/benchmarks/memory.md): OpenVINO FP32's timing process
peaked at 313 MiB against ONNX Runtime FP32's 146-149 (each at the batch a stream sends it) and ran
at 0.74-1.0x of its time, so it would have to run at 0.57x to replace it; on the AMX Xeon
OpenVINO BF16 ran at 0.2-0.3x (FINDINGS), which pays for its memory. Edge boards have 1-2 GB,
and a path that doubles the backbone's memory for a fifth of speed is not the better path there."""

CACHE_KIND = "facesdk-auto-choice"
CACHE_SCHEMA = 4
"""3: timings carry each path's peak memory, which the choice weighs; 4: each peak is the timing
process's own (schema 3 could carry the peak of the process that started it)."""
TIMED_BATCHES = (1, 8)
WARMUP, REPEATS, ROUNDS = 1, 3, 2
LOCK_TIMEOUT_S = 900.0
"""How long a first run waits for another process measuring the same key before it measures too."""

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TBB_NUM_THREADS")


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
            from ..backends.openvino import LEAN_BUCKETS

            return {"precision_hint": self.hint, "batch_buckets": LEAN_BUCKETS}
        return {}


REFERENCE = CpuPath("onnxruntime", "onnx-fp32")


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
    """OpenVINO's version from its package metadata: importing it would cost ~20 MiB of memory in a
    process that then runs ONNX Runtime."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino").split("-")[0]
    except PackageNotFoundError:
        return None


def cpu_signature() -> dict[str, Any]:
    """CPU model name and ISA flags, and the runtime versions: what a cached choice depends on."""
    import onnxruntime

    from ..bench.machine import cpu_info  # the one CPU reader; imported late (bench imports backends)

    cpu = cpu_info()
    runtimes = {"onnxruntime": onnxruntime.__version__, "openvino": _openvino_version()}
    return {"model": cpu["model"], "flags": cpu["flags"], "runtimes": runtimes}


def thread_settings(threads: int | None = None) -> dict[str, Any]:
    """What decides how many threads the runtimes use: the cores this process may run on, the
    intra-op threads passed to the backends (None: each runtime's default) and the environment."""
    usable = usable_cores()
    env = {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}
    return {"usable_cores": usable, "intra_op_threads": threads, "env": env}


def cache_key(manifest: ExportManifest, cpu: Mapping[str, Any], threads: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a cached choice depends on: every file ``auto`` can select (by sha256), the CPU,
    the runtimes and the thread settings."""
    files = {k: e.file.sha256 for k, e in sorted(manifest.models.items()) if e.format != "engine"}
    return {"files": files, "cpu": dict(cpu), "threads": dict(threads)}


def _has_bf16(cpu: Mapping[str, Any]) -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu["flags"]))


def candidate_paths(manifest: ExportManifest, cpu: Mapping[str, Any]) -> list[CpuPath]:
    """Every path the installed runtimes, this CPU and this export's models allow (reference first)."""
    paths = [REFERENCE]
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


def export_record(manifest: ExportManifest, path: CpuPath) -> tuple[Any, str] | None:
    """The agreement record the export carries for ``path``, with where it came from."""
    extra = manifest.models[path.model_key].extra
    if path.runtime == "onnxruntime":
        calibration = extra.get("calibration") if path.model_key == "onnx-int8" else None
        return (calibration, "export.json int8 calibration gate") if calibration else None
    record = (extra.get("openvino_agreement") or {}).get(path.hint)
    if record:
        return record, f"export.json openvino_agreement of {path.model_key}"
    legacy = extra.get("openvino_bf16") if path.hint == "bf16" and path.model_key == "onnx-fp32" else None
    return (legacy, "export.json openvino_bf16 (older export)") if legacy else None


def needs_approval(manifest: ExportManifest, path: CpuPath) -> bool:
    """True for a path the export carries no passing record for (``approve`` may check it)."""
    found = export_record(manifest, path)
    return not path.exact and (found is None or approval_problem(found[0]) is not None)


def _approvals(
    manifest: ExportManifest, paths: list[CpuPath], approved_here: Mapping[str, Mapping[str, Any]]
) -> tuple[list[CpuPath], dict[str, str]]:
    """Approved paths (in candidate order) and why the others are left out."""
    approved: list[CpuPath] = []
    left_out: dict[str, str] = {}
    for path in paths:
        if path.exact:
            approved.append(path)
            continue
        found = export_record(manifest, path)
        if needs_approval(manifest, path) and path.name in approved_here:
            found = (approved_here[path.name], "approve command, recorded in the auto cache")
        if found is None:
            left_out[path.name] = (
                "no agreement record (run 'python -m facesdk.auto approve --model EXPORT --crops DIR')"
            )
            continue
        problem = approval_problem(found[0])
        if problem is None:
            approved.append(path)
        else:
            left_out[path.name] = f"{found[1]}: {problem}"
    return approved, left_out


Timer = Callable[[Path, ExportManifest, Sequence[CpuPath], "int | None"], dict[str, dict[str, Any]]]


def time_paths(
    directory: Path, manifest: ExportManifest, paths: Sequence[CpuPath], threads: int | None
) -> dict[str, dict[str, Any]]:
    """Per path, median ms per call at batch 1 and 8, the batch a stream sends it and its peak
    resident memory there (:func:`peak_in_use`): ``{"1": ms, "8": ms, "stream_batch": n,
    "peak_mib": MiB}``, or ``{"error": why}``.

    Every (path, batch) is a row of ``facesdk bench``'s worker, run in its own child process, in
    :data:`ROUNDS` alternating rounds: the same harness as ``facesdk bench``.
    """
    from ..bench import timing  # imported late: bench imports the backends

    rows = [
        {"label": p.name, "runtime": p.runtime, "model": str(directory),
         "onnx": str(directory / manifest.models[p.model_key].file.path), "batch": b, "threads": threads,
         "warmup": WARMUP, "repeats": REPEATS, **{k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in p.options().items()}}
        for p in paths for b in TIMED_BATCHES if b <= manifest.max_batch
    ]  # fmt: skip
    results = timing.alternate_rounds(rows, functools.partial(timing.run_in_child, "facesdk.bench"), ROUNDS)
    out: dict[str, dict[str, Any]] = {}
    peaks: dict[str, dict[int, float]] = {}
    for row in timing.summarise(results):
        entry = out.setdefault(row["label"], {})
        if row["error"] or row["p50_ms"] is None:
            entry["error"] = row["error"] or "no timings"
            continue
        entry[str(row["batch"])] = row["p50_ms"]
        if row.get("peak_rss_mib") is not None:
            peaks.setdefault(row["label"], {})[int(row["batch"])] = float(row["peak_rss_mib"])
        if row.get("stream_batch"):
            entry["stream_batch"] = int(row["stream_batch"])
    for label, by_batch in peaks.items():
        if "error" not in out[label]:
            out[label]["peak_mib"] = peak_in_use(by_batch, out[label].get("stream_batch"))
    return out


def score(timings: Mapping[str, Any]) -> float:
    """Milliseconds per face, averaged over batch 1 and the largest timed batch."""
    per_face = [float(ms) / int(b) for b, ms in timings.items() if b.isdigit()]
    return sum(per_face) / len(per_face)


def peak_in_use(by_batch: Mapping[int, float], stream_batch: int | None) -> float:
    """A path's peak memory as a stream uses it: the peak of its smallest timed batch that covers
    the batch it is sent (``stream_batch``: 1 for ONNX Runtime on a CPU, the largest compiled
    bucket for OpenVINO); the largest timed batch's where none covers it or it is unknown.

    ONNX Runtime's batch-8 row holds eight crops' activations that a stream never sends it, while
    OpenVINO's compiles the batch-4 bucket that a stream does: comparing like for like needs this.
    """
    covering = [b for b in sorted(by_batch) if stream_batch is not None and b >= stream_batch]
    return by_batch[covering[0] if covering else max(by_batch)]


def required_ratio(path: Mapping[str, Any], kept: Mapping[str, Any]) -> float:
    """The share of ``kept``'s time (ms per face) that ``path`` must reach to replace it:
    ``1 - MARGIN``, less :data:`MEMORY_MARGIN_PER_100_MIB` per 100 MiB of peak memory it holds
    above ``kept`` (no memory term where either peak is unknown)."""
    extra = 0.0
    if path.get("peak_mib") is not None and kept.get("peak_mib") is not None:
        extra = max(0.0, float(path["peak_mib"]) - float(kept["peak_mib"]))
    return 1.0 - MARGIN - MEMORY_MARGIN_PER_100_MIB * extra / 100.0


def pick(timed: Sequence[CpuPath], timings: Mapping[str, Mapping[str, Any]]) -> CpuPath:
    """The exact FP32 path (OpenVINO FP32 only if it beats ONNX Runtime FP32 by the margin),
    replaced by the fastest other path only if that beats it by the margin; the margin grows
    with the memory a path holds above the one it would replace (:func:`required_ratio`)."""
    kept = REFERENCE
    for group in ([p for p in timed if p.exact], [p for p in timed if not p.exact]):
        base = timings[kept.name]
        fits = [
            p for p in group if score(timings[p.name]) <= required_ratio(timings[p.name], base) * score(base)
        ]
        if fits:
            kept = min(fits, key=lambda p: score(timings[p.name]))
    return kept


def _memory_note(timings: Mapping[str, Mapping[str, Any]], best: CpuPath) -> str:
    peak = timings[best.name].get("peak_mib")
    return f", peak {float(peak):.0f} MiB while timed" if peak is not None else ""


def _cache_path(directory: Path, key: Mapping[str, Any]) -> Path:
    return directory / f"{key['files']['onnx-fp32'][:16]}-{digest(key)[:16]}.json"


def _read_cache(path: Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The cache body if it is intact and made under ``key``; None (with a warning) otherwise."""
    if not path.is_file():
        return None
    body, problem = read_signed(
        path,
        CACHE_KIND,
        CACHE_SCHEMA,
        "auto-choice cache",
        lambda b: (
            "it was measured for other files, another CPU or other thread settings"
            if b.get("key") != key
            else None
        ),
    )
    if body is None:
        logger.warning("ignoring the auto-choice cache %s: %s; measuring again", path, problem)
    return body


def _write_cache(
    cache: Path,
    key: Mapping[str, Any],
    approved: list[str],
    choice: str,
    reason: str,
    timings: Mapping[str, Any],
) -> None:
    body = {
        "kind": CACHE_KIND,
        "schema_version": CACHE_SCHEMA,
        "key": dict(key),
        "approved": approved,
        "choice": choice,
        "reason": reason,
        "timings": dict(timings),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        write_signed(cache, body)
    except OSError as exc:  # a read-only home still runs, measuring each time
        logger.warning("could not write the auto-choice cache %s: %s", cache, exc)


@contextlib.contextmanager
def locked(path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (waits up to ``timeout_s``, then goes on without)."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 -- closed below, after the lock is released
    except (ImportError, OSError) as exc:  # no fcntl (Windows) or a read-only home: unlocked
        logger.debug("no lock on %s: %s", path, exc)
        yield
        return
    try:
        deadline, waiting = time.monotonic() + timeout_s, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    logger.warning("%s still locked after %.0f s; measuring without waiting", path, timeout_s)
                    break
                if not waiting:
                    logger.info("backend auto: another process is measuring this export; waiting for it")
                    waiting = True
                time.sleep(0.05)
        yield
    finally:
        handle.close()  # releases the lock


def choose_cpu_path(
    directory: str | os.PathLike[str],
    manifest: ExportManifest,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    timer: Timer = time_paths,
    cpu: Mapping[str, Any] | None = None,
    threads: int | None = None,
) -> Choice:
    """Choose (or recall) the approved CPU path for the export in ``directory`` (:func:`pick`).

    Args:
        directory: The export directory.
        manifest: Its (verified) manifest.
        cache_dir: Where choices and approvals are kept (default :func:`auto_cache_dir`).
        timer: Times the approved paths (default :func:`time_paths`); tests inject fake timings.
        cpu: The CPU signature (default :func:`cpu_signature`).
        threads: Intra-op threads the backends will use (None: each runtime's default).
    """
    directory = Path(directory)
    cpu = dict(cpu or cpu_signature())
    cache_root = Path(cache_dir) if cache_dir else auto_cache_dir()
    key = cache_key(manifest, cpu, thread_settings(threads))
    cache = _cache_path(cache_root, key)
    paths = candidate_paths(manifest, cpu)
    by_name = {p.name: p for p in paths}

    def file_of(path: CpuPath) -> Path:
        return directory / manifest.models[path.model_key].file.path

    with locked(cache.with_suffix(".lock")):  # one process measures, the others wait and read
        here = {n: r for k in ("onnx-fp32", "onnx-int8") if k in manifest.models
                for n, r in read_approvals(cache_root, manifest.models[k].file.sha256).items()}  # fmt: skip
        approved, left_out = _approvals(manifest, paths, here)
        body = _read_cache(cache, key) or {}
        if body and body.get("approved") != [p.name for p in approved]:
            logger.info(
                "backend auto: the approved paths changed since %s was measured; measuring again", cache
            )
            body = {}
        chosen = body.get("choice")
        if chosen is not None and chosen in by_name and by_name[chosen] in approved:
            reason = f"cached choice ({cache.name}): {body.get('reason', '')}"
            logger.info("backend auto: chose %s, %s", chosen, reason)
            return Choice(by_name[chosen], file_of(by_name[chosen]), reason, True, body.get("timings", {}))
        if chosen is not None:
            logger.warning("ignoring the auto-choice cache %s: it chose %r, not approved here", cache, chosen)
        logger.info("backend auto: timing %s (first use on this CPU)", ", ".join(p.name for p in approved))
        timings = dict(timer(directory, manifest, approved, threads))
        for name, entry in list(timings.items()):
            if "error" in entry:
                left_out[name] = f"could not run: {entry['error']}"
        timed = [p for p in approved if p.name in timings and "error" not in timings[p.name]]
        if REFERENCE not in timed:
            raise BackendError(
                f"backend auto: the reference ONNX Runtime FP32 could not run: {left_out.get(REFERENCE.name)}"
            )
        best = pick(timed, timings)
        ratio = score(timings[best.name]) / score(timings[REFERENCE.name])
        skipped = "; ".join(f"{n}: {why}" for n, why in left_out.items())
        others = "; ".join(
            f"{p.name} {score(timings[p.name]) / score(timings[REFERENCE.name]):.2f}x{_memory_note(timings, p)}"
            for p in timed if p != best
        )  # fmt: skip
        reason = (
            f"the pick of {len(timed)} paths checked against FP32 ({score(timings[best.name]):.2f} ms/face, "
            f"{ratio:.2f}x of onnxruntime fp32{_memory_note(timings, best)}"
            + (f"; {others}" if others else "")
            + f"; a path must be {MARGIN:.0%} faster than the exact one it replaces, "
            f"{MEMORY_MARGIN_PER_100_MIB:.0%} more per 100 MiB more memory)"
            + (f"; not considered: {skipped}" if skipped else "")
        )
        _write_cache(cache, key, [p.name for p in approved], best.name, reason, timings)
    logger.info("backend auto: chose %s, %s", best.name, reason)
    return Choice(best, file_of(best), reason, False, timings)


def approve_paths(
    directory: str | os.PathLike[str],
    manifest: ExportManifest,
    crops: FaceCrops,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    cpu: Mapping[str, Any] | None = None,
    make: Callable[[CpuPath], Any] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Check every path the export could not (OpenVINO paths without a passing export record) on
    ``crops`` against ONNX Runtime FP32, and record the results in the auto cache.

    Returns:
        The records per path name, and the paths that could not run with why.
    """
    directory = Path(directory)
    cpu = dict(cpu or cpu_signature())
    cache_root = Path(cache_dir) if cache_dir else auto_cache_dir()
    todo = [
        p for p in candidate_paths(manifest, cpu) if p.runtime == "openvino" and needs_approval(manifest, p)
    ]
    if not todo:
        return {}, {}
    make = make or (
        lambda p: create_backend(
            p.runtime, manifest, directory / manifest.models[p.model_key].file.path, **p.options()
        )
    )
    info = {"cpu": cpu["model"], "openvino": cpu["runtimes"].get("openvino")}
    records, failed = approve(crops, todo, make, REFERENCE, info)
    for key in ("onnx-fp32", "onnx-int8"):
        mine = {n: r for n, r in records.items() if by_key(n, todo) == key}
        if mine:
            sha = manifest.models[key].file.sha256
            with locked(cache_root / f"approved-{sha[:16]}.lock"):
                write_approvals(cache_root, sha, mine)
    return records, failed


def by_key(name: str, paths: Sequence[CpuPath]) -> str:
    return next(p.model_key for p in paths if p.name == name)


def _load_export(path: Path) -> ExportManifest:
    from ..contract.export_manifest import load_export_manifest

    if path.is_file():
        raise ConfigError(
            f"{path} is a file; backend auto chooses among an export folder's files (export.json beside "
            "model.onnx): pass that folder"
        )
    if not path.exists():
        raise MissingFileError(f"export directory {path} does not exist")
    return load_export_manifest(path)


def main(argv: Sequence[str] | None = None, prog: str = "python -m facesdk.auto") -> int:
    """``python -m facesdk.auto EXPORT`` prints what ``auto`` chooses here and why;
    ``... approve --model EXPORT --crops DIR`` checks the paths the export could not."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv[:1] == ["approve"]:
            parser = argparse.ArgumentParser(prog=f"{prog} approve", description="Approve the CPU paths "
                                             "the export could not check, on face crops of this device.")  # fmt: skip
            parser.add_argument("--model", type=Path, required=True, help="export directory")
            parser.add_argument("--crops", type=Path, required=True,
                                help="the export's calibration set, or a folder of >= 378 face crop images")  # fmt: skip
            args = parser.parse_args(argv[1:])
            manifest = _load_export(args.model)
            records, failed = approve_paths(args.model, manifest, FaceCrops(args.crops, manifest))
            if not records and not failed:
                print(
                    "nothing to approve: every path this CPU can run computes FP32 or has a passing record in export.json"
                )
            for name, record in records.items():
                low = min(record["agreement_lower_bound"].values())
                verdict = "approved" if record["passed"] else f"not approved (below {THRESHOLD})"
                print(f"{name}: {verdict}, lowest Wilson bound {low:.3f} on {record['samples']} crops")
            for name, why in failed.items():
                print(f"{name}: could not run: {why}")
            return 0
        parser = argparse.ArgumentParser(prog=prog, description=main.__doc__)
        parser.add_argument("export", type=Path)
        args = parser.parse_args(argv)
        choice = choose_cpu_path(args.export, _load_export(args.export))
        print(f"{choice.path.name}: {choice.reason}")
        return 0
    except FaceSdkError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
