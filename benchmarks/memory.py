"""Memory benchmark: peak resident memory of ``facesdk analyze`` per backend path, and of its parts.

Each row is a fresh child process, forked from a bare interpreter; its peak is the ``ru_maxrss``
that ``os.wait4`` returns for it (what ``/usr/bin/time -v`` prints as "Maximum resident set
size"), ``--repeats`` times, rows alternating:

- ``facesdk analyze VIDEO --model EXPORT --max-frames 60 --backend B`` for ``auto``,
  ``onnxruntime`` and ``openvino`` (where installed), on a six-face 1280 x 720 video;
- the parts, each in a process of its own: the interpreter with what ``analyze`` imports; those
  imports and the stream detector on the frames (decode and YuNet at the stream size); the imports
  and the ONNX Runtime backend loaded; and one backbone call of each ``--batches`` size;
- the stream with each classifier batch size (``Analyzer.stream(batch_size=B)``, ONNX Runtime);
- OpenVINO (where installed) with the batch buckets ``auto`` compiles (1 and 4), with bucket 1
  only, and with bucket 1 and every device listed at load (how the backend checked its device
  before; listing loads the GPU and NPU plugins);
- each knob undone once: ``analyze`` without the pinned mmap threshold, and with ONNX Runtime's
  memory pattern;
- the backbone's time per crop with and without the memory pattern, alternating in one process.

``auto`` runs once before the rows so its choice is cached (the first run on a machine also
times the paths in child processes). Writes ``docs/benchmarks/memory.md`` (``--out``) and the
``.json`` beside it. About three minutes on a quiet 2-core machine::

    python -m benchmarks.memory
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import DOCS, ROOT, add_detector_option, command_line, detector_path

log = logging.getLogger("memory_bench")

PATH_OPTIONS = {"--work", "--out", "--video"}
"""Options that name this machine's files: left out of the documented command (``--model`` becomes
EXPORT_DIR; ``--detector`` as :func:`benchmarks.common.command_line` says)."""


# ------------------------------------------------------------------------------ children
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, usage.ru_utime, usage.ru_stime, usage.ru_minflt, flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""Forks the measured command from a bare interpreter (``-S``, ~9 MiB): a child's peak starts at
the peak of the process it was forked from, so this script's own memory must not be that process."""


def peak_mib(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd`` to the end: its peak resident memory (``mib``, with its children's), ``wall_s``,
    CPU seconds (``user_s``, ``sys_s``) and minor page faults (``faults``).

    Raises:
        RuntimeError: The command failed (with the end of its stderr).
    """
    launch = [sys.executable, "-S", "-c", LAUNCHER, *cmd]
    start = time.perf_counter()
    proc = subprocess.run(launch, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    maxrss, user, system, faults = proc.stdout.split()[-4:]
    return {
        "mib": int(maxrss) / 1024.0,
        "wall_s": seconds,
        "user_s": float(user),
        "sys_s": float(system),
        "faults": int(faults),
    }  # ru_maxrss: KiB on Linux


def child_main(spec: dict[str, Any]) -> None:
    """One part of the pipeline, run in this fresh process (``--child JSON``)."""
    from facesdk.memory import pin_mmap_threshold

    step = spec["step"]
    if step == "analyze":  # facesdk analyze with one knob undone
        from facesdk.cli import analyze as analyze_cli

        if spec.get("no_pin"):
            analyze_cli.pin_mmap_threshold = lambda: False  # type: ignore[assignment]
        if spec.get("ov_buckets") is not None or spec.get("list_devices"):
            import facesdk.backends.openvino as ov_backend

            if spec.get("ov_buckets") is not None:  # as auto passes them: a keyword the loader does not set
                init = ov_backend.OpenVinoBackend.__init__

                def with_buckets(self: Any, *a: Any, **k: Any) -> None:
                    k.setdefault("batch_buckets", tuple(spec["ov_buckets"]))
                    init(self, *a, **k)

                ov_backend.OpenVinoBackend.__init__ = with_buckets  # type: ignore[method-assign]
            if spec.get("list_devices"):  # the check as it was: every plugin loaded to list devices
                check = ov_backend.check_device

                def listing(core: Any, device: str) -> None:
                    list(core.available_devices)
                    check(core, device)

                ov_backend.check_device = listing  # type: ignore[assignment]
        if spec.get("mem_pattern"):
            import facesdk.backends.onnxruntime as ort_backend

            create = ort_backend.create_session
            ort_backend.create_session = lambda *a, **k: create(  # type: ignore[assignment]
                *a, **k, extra_options={"enable_mem_pattern": True}
            )
        analyze_cli.main(spec["argv"])
        return
    for name in ("facesdk.cli.analyze", "facesdk.analyzer", "onnxruntime"):  # what 'facesdk analyze' imports
        importlib.import_module(name)

    pin_mmap_threshold()
    if step == "imports":
        return
    if step == "detector":
        import cv2

        from facesdk.faces.detector import DetectorConfig, FaceDetector, stream_config

        detector = FaceDetector(spec["detector"], stream_config(DetectorConfig()))
        capture = cv2.VideoCapture(spec["video"])
        for _ in range(spec["frames"]):
            ok, frame = capture.read()
            if not ok:
                break
            detector.detect(frame)
        capture.release()
        return
    if step == "stream":
        from facesdk import Analyzer

        with Analyzer(spec["model"], "onnxruntime", spec["detector"]) as analyzer:
            for i, _ in enumerate(analyzer.stream(spec["video"], batch_size=spec["batch"]), 1):
                if i >= spec["frames"]:
                    break
        return
    import numpy as np

    from facesdk.backends import create_backend
    from facesdk.model_loader import resolve_model

    resolved = resolve_model(spec["model"], "onnxruntime")
    backend = create_backend(
        "onnxruntime", resolved.manifest, resolved.path, intra_op_threads=spec["threads"]
    )
    h, w = resolved.manifest.input.shape[2:]
    if step == "batch":
        backend.run(np.zeros((spec["batch"], 3, int(h), int(w)), np.float32))


def child_cmd(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "benchmarks.memory", "--child", json.dumps(spec)]


# ------------------------------------------------------------------------------ rows
def plan_rows(args: argparse.Namespace, video: str, detector: str) -> list[dict[str, Any]]:
    """Every row: its group, label, and the command that is measured."""
    analyze = [str(video), "--model", str(args.model), "--max-frames", str(args.frames), "--force"]
    out = str(Path(args.work) / "analyze.jsonl")
    backends = ["auto", "onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    rows: list[dict[str, Any]] = []
    for b in backends:
        argv = [*analyze, "--backend", b, "--json", out]
        rows.append(
            {
                "group": "analyze",
                "label": f"facesdk analyze --backend {b}",
                "cmd": [sys.executable, "-m", "facesdk", "analyze", *argv],
            }
        )
    common = {"model": str(args.model), "video": str(video), "detector": detector, "frames": args.frames}
    parts = [
        ("interpreter + imports (numpy, cv2, onnxruntime, facesdk)", {"step": "imports"}),
        (f"imports + stream detector on {args.frames} frames (decode, YuNet at 640)", {"step": "detector"}),
        ("imports + ONNX Runtime backend loaded (no frames)", {"step": "backend", "threads": None}),
    ]
    parts += [
        (f"imports + backend + one call of {b} crop(s)", {"step": "batch", "batch": b, "threads": None})
        for b in args.batches
    ]
    rows += [
        {"group": "parts", "label": label, "cmd": child_cmd({**common, **spec})} for label, spec in parts
    ]
    rows += [
        {
            "group": "stream batch",
            "label": f"Analyzer.stream(batch_size={b}), onnxruntime",
            "batch": b,
            "cmd": child_cmd({**common, "step": "stream", "batch": b}),
        }
        for b in args.batches
    ]
    if "openvino" in backends:
        argv = [*analyze, "--backend", "openvino", "--json", out]
        for label, knob in (
            ("buckets 1 and 4 (what auto's OpenVINO paths compile)", {"ov_buckets": [1, 4]}),
            ("bucket 1 only", {"ov_buckets": [1]}),
            ("bucket 1 only, every OpenVINO device listed at load (the check before)",
             {"ov_buckets": [1], "list_devices": True}),
        ):  # fmt: skip
            rows.append(
                {
                    "group": "openvino",
                    "label": f"facesdk analyze --backend openvino, {label}",
                    "cmd": child_cmd({"step": "analyze", "argv": argv, **knob}),
                }
            )
    argv = [*analyze, "--backend", "onnxruntime", "--json", out]
    for label, knob in (
        ("without the pinned mmap threshold", "no_pin"),
        ("with ORT's memory pattern", "mem_pattern"),
    ):
        rows.append(
            {
                "group": "knob undone",
                "label": f"facesdk analyze --backend onnxruntime, {label}",
                "cmd": child_cmd({"step": "analyze", "argv": argv, knob: True}),
            }
        )
    return rows


def measure(rows: list[dict[str, Any]], repeats: int) -> None:
    """Fill each row's ``runs`` and medians, rows alternating in order each repeat."""
    for row in rows:
        row["runs"] = []
    for r in range(repeats):
        for row in rows if r % 2 == 0 else rows[::-1]:
            row["runs"].append(peak_mib(row["cmd"]))
            log.info("%s: %s", row["label"], {k: round(v, 2) for k, v in row["runs"][-1].items()})
    for row in rows:
        for key in ("wall_s", "user_s", "sys_s", "faults"):
            row[key] = statistics.median(run[key] for run in row["runs"])
        row["mib"] = max(run["mib"] for run in row["runs"])  # the highest run: the target is a bound
        del row["cmd"]


def pattern_timing(model: Path, repeats: int) -> dict[str, Any]:
    """ms per crop at batch 1 and 8 with and without ONNX Runtime's memory pattern (2 threads),
    the two sessions alternating in one process (``facesdk.bench.timing.time_calls``)."""
    import numpy as np

    from facesdk.bench.timing import time_calls
    from facesdk.model_loader import resolve_model

    from .common import cpu_session

    resolved = resolve_model(model, "onnxruntime")
    h, w = resolved.manifest.input.shape[2:]
    name = resolved.manifest.input.name
    sessions = {on: cpu_session(resolved.path, 2, enable_mem_pattern=on) for on in (False, True)}
    times: dict[str, list[float]] = {}
    for r in range(repeats):
        for b in (1, 8):
            x = np.random.default_rng(r).standard_normal((b, 3, int(h), int(w)), np.float32)
            for on in (False, True) if r % 2 == 0 else (True, False):
                ms = time_calls(lambda s=sessions[on], x=x: s.run(None, {name: x}), 1, 3 if b == 1 else 1)
                times.setdefault(f"{'on' if on else 'off'} {b}", []).extend(float(t) / b for t in ms)
    return {k: float(np.median(v)) for k, v in times.items()}


# ------------------------------------------------------------------------------ report
def render(report: dict[str, Any]) -> str:
    lines = [
        "# Peak resident memory of `facesdk analyze`",
        "",
        f"CPU: {report['cpu_line']}. Export: {report['model']}. Video: {report['frames']} frames of a "
        f"six-face 1280 x 720 video. Each row is a fresh process, peak = `ru_maxrss` (what `/usr/bin/time -v` "
        f"calls Maximum resident set size), {report['repeats']} runs, rows alternating; times and faults are "
        f"medians of the runs; load average "
        f"{report['load_start']:.1f} at the start, {report['load_end']:.1f} at the end, {report['minutes']:.1f} min.",
        "",
        "Reproduce (with your own export; without `--model` a random-init edge export is built, which "
        "needs `[train,export]`):",
        "",
        "```bash",
        report["command"],
        "```",
        "",
        f"Paths: {report['paths']}",
        "",
        f"Why `auto` chose it: {report.get('auto_reason', 'not recorded')}",
    ]
    for group, title in (
        ("analyze", "The measurement: each backend path"),
        ("parts", "Where it goes (each part in a process of its own)"),
        ("stream batch", "The stream's classifier batch size (whole pipeline, no CLI)"),
        ("openvino", "OpenVINO's batch buckets and device check"),
        ("knob undone", "Each knob undone once"),
    ):
        lines += [
            "",
            f"## {title}",
            "",
            "| run | peak MiB (highest run) | each run | wall s | user s | sys s | minor faults |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in report["rows"] if r["group"] == group):
            peaks = ", ".join(f"{run['mib']:.0f}" for run in row["runs"])
            lines.append(
                f"| {row['label']} | {row['mib']:.0f} | {peaks} | {row['wall_s']:.1f} | {row['user_s']:.1f} | "
                f"{row['sys_s']:.2f} | {row['faults']:,.0f} |"
            )
    t = report["pattern_ms_per_crop"]
    lines += [
        "",
        "## Speed of the memory pattern knob (ONNX Runtime FP32, 2 threads, ms per crop, medians)",
        "",
        "| batch | pattern off (the SDK's) | pattern on | off / on |",
        "|---|---|---|---|",
        *(
            f"| {b} | {t[f'off {b}']:.1f} | {t[f'on {b}']:.1f} | {t[f'off {b}'] / t[f'on {b}']:.2f} |"
            for b in (1, 8)
        ),
        "",
    ]
    return "\n".join(lines)


def doc_command(argv: Sequence[str]) -> str:
    words, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        name, eq, _ = word.partition("=")
        if name in PATH_OPTIONS or name == "--model":
            skip = not eq and i + 1 < len(argv)
            words += ["--model", "EXPORT_DIR"] if name == "--model" else []
            continue
        words.append(word)
    return command_line("python -m benchmarks.memory", words)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="an export directory (default: a random-init edge export built here; needs [train,export])",
    )
    p.add_argument("--video", type=Path, default=None, help="a six-face video (default: built here)")
    p.add_argument("--frames", type=int, default=60, help="frames each run analyses")
    p.add_argument("--repeats", type=int, default=2, help="runs per row")
    p.add_argument("--batches", default="1,2,4,8", help="backbone batch sizes of the per-batch rows")
    p.add_argument("--timing-repeats", type=int, default=12, help="rounds of the memory-pattern timing")
    p.add_argument("--out", type=Path, default=DOCS / "memory.md")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    add_detector_option(p)
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    if args.repeats < 1 or args.frames < 1 or not args.batches or min(args.batches) < 1:
        p.error("--repeats, --frames and every --batches size must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child_main(json.loads(argv[1]))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    from facesdk.bench import cpu_info, describe_cpu

    started, cpu = time.perf_counter(), cpu_info()
    report: dict[str, Any] = {
        "command": doc_command(argv),
        "cpu": cpu,
        "cpu_line": describe_cpu(cpu),
        "load_start": os.getloadavg()[0],
        "frames": args.frames,
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory() as tmp:
        args.work = args.work or Path(tmp)
        args.work.mkdir(parents=True, exist_ok=True)
        if args.model is None:
            from .stream import random_export

            args.model = random_export(args.work, 384, None)
        report["model"] = describe_export(args.model, built=args.model.parent == args.work)
        video = args.video or build_video(args.work / "six.avi", args.frames)
        detector = str(detector_path(args.detector))
        rows = plan_rows(args, str(video), detector)
        from facesdk import Analyzer

        from .stream import describe

        with Analyzer(args.model, "auto", detector) as warm:  # caches auto's choice before the rows
            report["paths"] = {"auto": describe(warm)}
        from facesdk.auto.choice import choose_cpu_path
        from facesdk.contract.export_manifest import load_export_manifest

        report["auto_reason"] = choose_cpu_path(args.model, load_export_manifest(args.model)).reason  # cached
        measure(rows, args.repeats)
        report["rows"] = rows
        report["pattern_ms_per_crop"] = pattern_timing(args.model, args.timing_repeats)
    report["load_end"] = os.getloadavg()[0]
    report["minutes"] = (time.perf_counter() - started) / 60.0
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.write_text(render(report))
    log.info("wrote %s (%.1f min)", out, report["minutes"])
    return 0


def describe_export(directory: Path, built: bool) -> str:
    """What the export is: built here (random init) or given, its input size and FP32 file size."""
    from facesdk.export_manifest import load_export_manifest

    manifest = load_export_manifest(directory)
    onnx = directory / manifest.models["onnx-fp32"].file.path
    h, w = manifest.input.shape[2:]
    origin = "vit_pe_core_tiny_patch16_384, random init, built here" if built else "the export given"
    return f"{origin}, {h} x {w} input, FP32 ONNX {onnx.stat().st_size / 1e6:.0f} MB"


def build_video(path: Path, frames: int) -> Path:
    """The six-face 1280 x 720 video of ``benchmarks/stream.py`` (needs scikit-image's astronaut)."""
    from .stream_live import panned, scene, write_video

    return write_video(path, panned(scene(6), frames + 8), 25.0)


if __name__ == "__main__":
    sys.exit(main())
