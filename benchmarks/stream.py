"""Stream benchmark: live cameras against the issue's targets, and video files as fast as they go.

All frames are 1280 x 720, made from ``skimage.data.astronaut()`` (``benchmarks/stream_live.py``).
In one run, so that the numbers share the machine's state:

- live cameras: frames delivered at a camera's rate (``live=True``, a queue of one: the oldest
  frame is dropped when the pipeline is behind) for ``--warmup-seconds`` and then
  ``--live-seconds``, for each backend (default ONNX Runtime FP32 and ``auto``): one face, six
  faces, faces coming and going (the delay from a face's first frame to its first estimate),
  and four cameras at 15 frames/s with six faces each through one ``Analyzer.streams``. Each run
  reports the share of frames dropped, capture-to-result latency p50/p95, the age of estimates and
  the share of faces without one; ``--rounds`` rounds, each number the worst round's;
- a verdict: every number against its target, pass or fail, and the CPU it ran on;
- with ``--thread-split``, the six-face live case at each split of the two cores between the
  detector (``cv2.setNumThreads``) and the backbone (intra-op threads);
- throughput: the one- and six-face videos read as fast as the pipeline takes them (waiting
  mode) with per-track scheduling and the detect/backbone overlap on and off: frames/s, crops per
  frame, estimate age and per-thread ms;
- the YuNet detector's time on the six-face frame at several input sizes, with the smallest face
  each size still finds.

Writes ``docs/benchmarks/stream.md`` (``--out``), the ``.json`` beside it and a PNG plot. About
nine minutes on 2 cores with the defaults, five of them live (the thread split adds about five)::

    python -m benchmarks.stream
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facesdk import Analyzer
from facesdk.backends.base import parallel_calls
from facesdk.faces.detector import STREAM_MAX_SIDE, DetectorConfig, FaceDetector
from facesdk.scheduling import ScheduleConfig

from .common import DOCS, detector_path
from .stream_live import (
    FRAME,
    ComeAndGo,
    LiveCase,
    astronaut_bgr,
    panned,
    percentiles,
    run_live,
    scene,
    worst,
    write_video,
)
from .stream_report import checks, plot, render

log = logging.getLogger("stream_bench")

ASTRONAUT_FACE = (178.0, 63.0, 90.0, 113.0)
"""Where YuNet finds the astronaut's face in the 512 x 512 image (x, y, w, h)."""
PATH_OPTIONS = {"--detector": None, "--work": None, "--out": None, "--model": "EXPORT_DIR"}
"""Options that name this machine's files: left out of the documented command (or shown as a placeholder)."""


# ------------------------------------------------------------------------------ model
def random_export(work: Path, size: int, depth: int | None) -> Path:
    """Edge export of ``vit_pe_core_tiny_patch16_384`` (random init, three heads) at ``size`` px, fp32 ONNX."""
    import torch

    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.export.options import ExportOptions
    from facesdk.export.pipeline import run_export
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import build_model, save_checkpoint

    out = work / f"export_{size}_{depth}"
    if (out / "export.json").is_file():
        return out
    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"img_size": size} | ({"depth": depth} if depth else {})
    backbone = BackboneSpec("vit_pe_core_tiny_patch16_384", "random", kwargs)
    heads = {t.name: HeadSpec() for t in DEFAULT_TASKS}
    model, preprocess, method = build_model(
        backbone, DEFAULT_TASKS, heads, MethodSpec("linear_probe"), load_weights=False
    )
    ckpt = work / f"ckpt_{size}_{depth}"
    save_checkpoint(
        model, ckpt, backbone=backbone, preprocess=preprocess, tasks=DEFAULT_TASKS, method=method, heads=heads
    )
    run_export(ExportOptions(ckpt=ckpt, out=out, max_batch=8, onnx_only=True, force=True))
    return out


def describe(analyzer: Analyzer) -> str:
    """The backend and path an Analyzer runs (what ``auto`` chose)."""
    backend = analyzer.backend
    text = getattr(backend, "describe", None)
    return text() if callable(text) else str(getattr(backend, "name", backend))


# ------------------------------------------------------------------------------ detector sizes
def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in ms (``facesdk.bench``'s timing loop)."""
    from facesdk.bench.timing import time_calls

    return float(np.median(time_calls(fn, warmup, repeats)))


def smallest_face(detector: FaceDetector, image: np.ndarray) -> list[float] | None:
    """Shrink the astronaut on a 1280 x 720 canvas until the detector loses its face; the last found (w, h)."""
    x0, y0, fw, fh = ASTRONAUT_FACE
    found = None
    for scale in np.arange(1.0, 0.04, -0.02):
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.full((FRAME[1], FRAME[0], 3), 90, np.uint8)
        canvas[100 : 100 + small.shape[0], 300 : 300 + small.shape[1]] = small
        cx, cy = 300 + (x0 + fw / 2) * scale, 100 + (y0 + fh / 2) * scale
        hit = any(
            abs(d.box[0] + d.box[2] / 2 - cx) < fw * scale / 2
            and abs(d.box[1] + d.box[3] / 2 - cy) < fh * scale / 2
            for d in detector.detect(canvas)
        )
        if not hit:
            break
        found = [round(fw * scale, 1), round(fh * scale, 1)]
    return found


def detector_sizes(detector_path: Path, sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    """YuNet on the six-face frame at each ``max_side``: median ms, faces found, smallest face found."""
    frame, image = scene(6), astronaut_bgr()
    rows = []
    for side in sizes:
        detector = FaceDetector(detector_path, DetectorConfig(max_side=side))
        rows.append(
            {
                "max_side": side,
                "ms": median_ms(lambda d=detector: d.detect(frame), repeats),
                "faces": len(detector.detect(frame)),
                "smallest_face_px": smallest_face(detector, image),
            }
        )
        log.info("detector %s", rows[-1])
    return rows


# ------------------------------------------------------------------------------ throughput (video files)
def consume(stream: Iterator[Any], limit: int) -> dict[str, Any]:
    """Iterate up to ``limit`` results; per frame: backbone crops, faces and estimate ages."""
    crops, ages, faces = [], [], []
    start = time.perf_counter()
    for result, _ in zip(stream, range(limit), strict=False):
        crops.append(sum(f.inferred for f in result.faces))
        faces.append(len(result.faces))
        ages += [f.estimate_age_s for f in result.faces if f.estimated]
    wall = time.perf_counter() - start
    with contextlib.suppress(AttributeError):
        stream.close()  # type: ignore[attr-defined]
    return {"frames": len(crops), "seconds": wall, "crops": crops, "ages": ages, "faces": faces}


def stage_split(stages: dict[str, float], overlap: bool) -> dict[str, float]:
    """Mean ms per frame of each thread of the pipeline: capture (decode) and, overlapped, detect and backbone.

    The capture thread always runs on its own; with ``overlap`` the detect worker (detect, track,
    schedule, crop) and the classifier (backbone, post-process) run side by side, without it the
    caller's thread does both. The slowest thread bounds the frame rate.
    """
    decode, detect = stages.get("decode", 0.0), stages.get("detect", 0.0)
    backbone = sum(stages.get(k, 0.0) for k in ("align", "infer", "post"))
    if overlap:
        return {"decode": decode, "detect": detect, "backbone": backbone}
    return {"decode": decode, "detect + backbone": detect + backbone}


def throughput_round(analyzer: Analyzer, video: Path, job: dict[str, Any], frames: int) -> dict[str, Any]:
    """One round of one configuration: the video file as fast as the pipeline takes it (waiting mode)."""
    opts = {"schedule": ScheduleConfig(enabled=job["schedule"]), "overlap": job["overlap"]}
    consume(analyzer.stream(str(video), **opts), 8)  # warm-up: sessions, caches, first tracks
    analyzer.reset_stats()
    run = consume(analyzer.stream(str(video), **opts), frames)
    run["stages"] = {k: v["mean"] for k, v in analyzer.stats().items() if "mean" in v}
    log.info(
        "throughput: %s face(s), schedule %s, overlap %s, %s: %.1f frames/s, %.2f crops/frame",
        job["video"], job["schedule"], job["overlap"], job["backend"],
        run["frames"] / run["seconds"], sum(run["crops"]) / max(run["frames"], 1),
    )  # fmt: skip
    return run


def summarise_throughput(job: dict[str, Any], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the rounds of a configuration (frames/s per round and over all of them)."""
    n = max(sum(r["frames"] for r in rounds), 1)
    keys = set().union(*(r["stages"] for r in rounds))
    stages = {k: sum(r["stages"].get(k, 0.0) * r["frames"] for r in rounds) / n for k in sorted(keys)}
    return {
        **job,
        "frames": n,
        "fps": n / sum(r["seconds"] for r in rounds),
        "fps_rounds": [r["frames"] / r["seconds"] for r in rounds],
        "crops_per_frame": sum(sum(r["crops"]) for r in rounds) / n,
        "faces_per_frame": sum(sum(r["faces"]) for r in rounds) / n,
        "estimate_age_s": percentiles(a for r in rounds for a in r["ages"]),
        "stage_ms": stages,
        "threads_ms_per_frame": stage_split(stages, job["overlap"]),
    }


def alternate(items: Sequence[Any], round_: int) -> list[Any]:
    """``items`` in order on even rounds and reversed on odd ones (so no job always runs first)."""
    return list(items) if round_ % 2 == 0 else list(items)[::-1]


def throughput_rows(
    args: argparse.Namespace, analyzers: dict[str, Analyzer], videos: dict[str, Path]
) -> list[dict[str, Any]]:
    """Every configuration, ``args.rounds`` times (ONNX Runtime all four, other backends the default)."""
    jobs = []
    for backend, name in itertools.product(analyzers, ("one", "six")):
        for schedule, overlap in ((True, True), (True, False), (False, True), (False, False)):
            if backend == "onnxruntime" or (schedule and overlap):
                jobs.append({"video": name, "schedule": schedule, "overlap": overlap, "backend": backend})
    raw: list[list[dict[str, Any]]] = [[] for _ in jobs]
    for round_ in range(args.rounds):
        for i in alternate(range(len(jobs)), round_):
            job = jobs[i]
            frames = args.frames if job["schedule"] else args.frames_unscheduled
            raw[i].append(throughput_round(analyzers[job["backend"]], videos[job["video"]], job, frames))
    return [summarise_throughput(job, raw[i]) for i, job in enumerate(jobs)]


# ------------------------------------------------------------------------------ live cameras
def live_row(rounds: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
    """A live case's row: each number the worst of its rounds, the stages averaged, the rounds kept."""
    measured = [{k: v for k, v in r.items() if k != "stages"} for r in rounds]
    stages = {}
    for key in rounds[0]["stages"]:
        values = [r["stages"][key] for r in rounds if r["stages"][key] is not None]
        stages[key] = float(np.mean(values)) if values else None
    return {**config, **worst(measured), "stages": stages, "rounds": measured}


def _progress(what: str, round_: int, rounds: int, s: dict[str, Any]) -> None:
    lat, age = s["latency_ms"], s["estimate_age_s"]
    first = s.get("first_estimate")
    log.info(
        "live %s, round %d/%d: dropped %s, latency p95 %s ms, estimate age max %s s, without estimate %s%s",
        what, round_ + 1, rounds, _pct(s["dropped_share"]), _num(lat["p95"], 0), _num(age["max"], 2),
        _pct(s["unestimated_share"]),
        f", first estimate p95 {_num(first['delay_s']['p95'], 2)} s" if first else "",
    )  # fmt: skip


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def live_rows(
    args: argparse.Namespace, analyzers: dict[str, Analyzer], cases: list[LiveCase]
) -> list[dict[str, Any]]:
    """Every backend on every live case, ``args.rounds`` times in alternating order."""
    jobs = list(itertools.product(analyzers, cases))
    raw: list[list[dict[str, Any]]] = [[] for _ in jobs]
    for round_ in range(args.rounds):
        for i in alternate(range(len(jobs)), round_):
            backend, case = jobs[i]
            raw[i].append(run_live(analyzers[backend], case, args.warmup_seconds, args.live_seconds))
            _progress(f"{case.name}, {backend}", round_, args.rounds, raw[i][-1])
    return [
        live_row(raw[i], backend=backend, case=case.name, fps=case.fps, cameras=case.cameras)
        for i, (backend, case) in enumerate(jobs)
    ]


def split_variants(export: Path, analyzers: dict[str, Analyzer]) -> list[tuple[str, dict[str, Any]]]:
    """``(runtime, Analyzer options)`` per backbone thread count: ONNX Runtime, and OpenVINO where installed.

    OpenVINO runs the path ``auto`` chose when that is OpenVINO (file, precision, batch buckets).
    """
    variants = [("onnxruntime", {"backend": "onnxruntime", "intra_op_threads": n}) for n in (1, 2)]
    if importlib.util.find_spec("openvino") is None:
        return variants
    base: dict[str, Any] = {"backend": "openvino"}
    auto = analyzers.get("auto")
    backend = auto.backend if auto is not None else None
    if auto is not None and getattr(backend, "name", "") == "openvino":
        chosen = Path(auto.model_path).resolve()
        for key, model in auto.manifest.models.items():
            if (export / model.file.path).resolve() == chosen:
                base["precision"] = key.split("-", 1)[1]
        base |= {"precision_hint": backend.precision_hint, "batch_buckets": backend.batch_buckets}
    return variants + [("openvino", {**base, "num_threads": n}) for n in (1, 2)]


def thread_split_rows(
    args: argparse.Namespace, export: Path, detector: Path, case: LiveCase, analyzers: dict[str, Analyzer]
) -> list[dict[str, Any]]:
    """The live ``case`` for every (runtime, detector threads, backbone threads), rounds alternating."""
    saved = cv2.getNumThreads()
    variants = split_variants(export, analyzers)
    jobs = list(itertools.product(range(len(variants)), (1, 2)))
    raw: list[list[dict[str, Any]]] = [[] for _ in jobs]
    try:
        with contextlib.ExitStack() as stack:
            split = [stack.enter_context(Analyzer(export, detector=detector, **opts)) for _, opts in variants]
            for round_ in range(args.rounds):
                for i in alternate(range(len(jobs)), round_):
                    v, det = jobs[i]
                    cv2.setNumThreads(det)
                    raw[i].append(run_live(split[v], case, args.warmup_seconds, args.live_seconds))
                    threads = variants[v][1].get("intra_op_threads") or variants[v][1].get("num_threads")
                    what = f"{case.name}, {variants[v][0]}, detector {det} / backbone {threads} threads"
                    _progress(what, round_, args.rounds, raw[i][-1])
            paths = [describe(a) for a in split]
    finally:
        cv2.setNumThreads(saved)
    return [
        live_row(
            raw[i],
            runtime=variants[v][0],
            path=paths[v],
            detector_threads=det,
            backbone_threads=variants[v][1].get("intra_op_threads") or variants[v][1].get("num_threads"),
        )
        for i, (v, det) in enumerate(jobs)
    ]


PRIORITY_VARIANTS = ((0, None), (None, 1), (None, None), (19, None))
"""``(backbone_nice, parallel_calls)`` of the priority runs (``None``: the default): the backbone
at the process's priority, one call at a time, the defaults, and the lowest priority."""


def priority_rows(
    args: argparse.Namespace, export: Path, detector: Path, cases: Sequence[LiveCase]
) -> list[dict[str, Any]]:
    """ONNX Runtime FP32 on the six-face and many-camera live cases with the backbone's threads at
    niceness 0 (the process's priority), at the default ``backbone_nice`` and at 19, and with one
    backbone call at a time against the backend's default (:data:`PRIORITY_VARIANTS`), rounds
    alternating.

    Each variant has an Analyzer of its own: a thread's niceness cannot be lowered again, so one
    backend cannot serve two levels."""
    default_nice = ScheduleConfig().backbone_nice
    variants = list(
        dict.fromkeys(
            (nice if nice is not None else default_nice, calls) for nice, calls in PRIORITY_VARIANTS
        )
    )
    jobs = list(itertools.product(range(len(variants)), cases))
    raw: list[list[dict[str, Any]]] = [[] for _ in jobs]
    with contextlib.ExitStack() as stack:
        made = [
            stack.enter_context(
                Analyzer(
                    export,
                    backend="onnxruntime",
                    detector=detector,
                    schedule=ScheduleConfig(backbone_nice=nice),
                    **({"parallel_calls": calls} if calls is not None else {}),
                )
            )
            for nice, calls in variants
        ]
        at_once = [parallel_calls(a.backend) for a in made]
        for round_ in range(args.rounds):
            for i in alternate(range(len(jobs)), round_):
                v, case = jobs[i]
                raw[i].append(run_live(made[v], case, args.warmup_seconds, args.live_seconds))
                _progress(
                    f"{case.name}, onnxruntime, backbone_nice {variants[v][0]}, {at_once[v]} call(s) at once",
                    round_,
                    args.rounds,
                    raw[i][-1],
                )
    return [
        live_row(
            raw[i],
            case=case.name,
            backend="onnxruntime",
            backbone_nice=variants[v][0],
            parallel_calls=at_once[v],
        )
        for i, (v, case) in enumerate(jobs)
    ]


# ------------------------------------------------------------------------------ entry point
def doc_command(argv: Sequence[str]) -> str:
    """``python -m benchmarks.stream`` with the run's options, less those naming this machine's files."""
    words, skip = ["python -m benchmarks.stream"], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        name, eq, _ = word.partition("=")
        if name in PATH_OPTIONS:
            skip = not eq and i + 1 < len(argv)
            if PATH_OPTIONS[name]:
                words += [name, PATH_OPTIONS[name]]
            continue
        words.append(word)
    return " ".join(words)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DOCS / "stream.md")
    p.add_argument("--model", type=Path, default=None,
                   help="an export directory (default: a random-init edge export built here; needs [train,export])")  # fmt: skip
    p.add_argument("--size", type=int, default=384, help="backbone input px of the built export")
    p.add_argument("--depth", type=int, default=None, help="backbone blocks of the built export (default: the model's)")  # fmt: skip
    p.add_argument("--backends", default="onnxruntime,auto", help="comma-separated Analyzer backends")
    p.add_argument("--rounds", type=int, default=2, help="rounds over all runs, in alternating order")
    p.add_argument("--fps", type=float, default=25.0, help="camera rate of the one-face, six-face and come-and-go runs")  # fmt: skip
    p.add_argument("--live-seconds", type=float, default=15.0, help="measured camera seconds per live run")
    p.add_argument("--warmup-seconds", type=float, default=3.0, help="camera seconds before the measurement")
    p.add_argument("--cameras", type=int, default=4, help="cameras of the many-camera run")
    p.add_argument("--cameras-fps", type=float, default=15.0, help="their rate (six faces each)")
    p.add_argument("--thread-split", action="store_true",
                   help="also run six faces live at each detector/backbone thread split, and the six-face and camera runs "
                        "with the backbone at other priorities and one call at a time (about 11 min more)")  # fmt: skip
    p.add_argument("--frames", type=int, default=100, help="frames per scheduled throughput run")
    p.add_argument("--frames-unscheduled", type=int, default=25, help="frames per throughput run, scheduling off")  # fmt: skip
    p.add_argument("--detector", type=Path, default=None, help="YuNet model (default: the SDK's lookup, see 'facesdk models')")  # fmt: skip
    p.add_argument("--detector-sizes", default="1280,960,640,480,320")
    p.add_argument("--detector-repeats", type=int, default=20)
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = p.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    if args.rounds < 1 or args.live_seconds <= 0 or args.warmup_seconds < 0 or args.cameras < 1:
        p.error("--rounds and --cameras must be >= 1, --live-seconds > 0 and --warmup-seconds >= 0")
    return args


def make_inputs(args: argparse.Namespace, work: Path) -> tuple[dict[str, Path], list[LiveCase]]:
    """The one- and six-face videos (looping seamlessly), the come-and-go video and the live cases."""
    count = max(args.frames, args.frames_unscheduled) + 8
    videos = {name: write_video(work / f"{name}.avi", panned(scene(n), count), args.fps)
              for name, n in (("one", 1), ("six", 6))}  # fmt: skip
    come_and_go = ComeAndGo(args.fps)
    cases = [
        LiveCase("one face", videos["one"], args.fps),
        LiveCase("six faces", videos["six"], args.fps),
        LiveCase("come and go", come_and_go.write(work / "come_and_go.avi"), args.fps, 1, come_and_go),
        LiveCase(f"{args.cameras} cameras", videos["six"], args.cameras_fps, args.cameras),
    ]
    return videos, cases


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from facesdk.bench import cpu_info, describe_cpu

    started, cpu = time.perf_counter(), cpu_info()
    log.info("CPU: %s", describe_cpu(cpu))
    detector = detector_path(args.detector)
    report: dict[str, Any] = {
        "command": doc_command(argv),
        "cpu": cpu,
        "cpu_line": describe_cpu(cpu),
        "load_start": os.getloadavg()[0],
        "model": {"name": "vit_pe_core_tiny_patch16_384", "size": args.size, "depth": args.depth}
        if args.model is None
        else {"name": "given export", "size": None, "depth": None},
        **{k: getattr(args, k) for k in ("backends", "frames", "frames_unscheduled", "rounds", "fps",
                                          "live_seconds", "warmup_seconds", "cameras", "cameras_fps")},
        "come_and_go": {"cycle_s": ComeAndGo(args.fps).cycle_s, "on_s": ComeAndGo(args.fps).on_s},
        "stream_max_side": STREAM_MAX_SIDE,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        export = args.model or random_export(work, args.size, args.depth)
        videos, cases = make_inputs(args, work)
        analyzers = {
            b: stack.enter_context(Analyzer(export, backend=b, detector=detector)) for b in args.backends
        }
        report["paths"] = {b: describe(a) for b, a in analyzers.items()}
        log.info("backends: %s", report["paths"])
        report["live"] = live_rows(args, analyzers, cases)
        report["thread_split"] = (
            thread_split_rows(args, export, detector, cases[1], analyzers) if args.thread_split else None
        )
        report["priority"] = (
            priority_rows(args, export, detector, [cases[1], cases[3]]) if args.thread_split else None
        )
        report["rows"] = throughput_rows(args, analyzers, videos)
        sizes = [int(s) for s in args.detector_sizes.split(",") if s]
        report["detector"] = detector_sizes(detector, sizes, args.detector_repeats)
    report["load_end"] = os.getloadavg()[0]
    report["minutes"] = (time.perf_counter() - started) / 60.0
    report["checks"] = checks(report)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    report["plot"] = out.with_suffix(".png").name
    plot(report, out.with_suffix(".png"))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.write_text(render(report))
    log.info("wrote %s (%.1f min)", out, report["minutes"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
