"""Audience benchmark: what ``facesdk.audience`` costs per frame, and its memory over a long run.

1. Overhead: the stream benchmark's six-face live case (a 1280 x 720 video of six astronaut tiles
   delivered at 25 frames/s like a camera, ``Analyzer.stream(..., live=True)``, ONNX Runtime FP32
   unless ``--backend`` says otherwise) runs with an :class:`~facesdk.audience.Audience` fed
   every result in the caller's thread. Its time per frame is compared with the process's CPU
   time per frame over the same run (detection, tracking, backbone and labelling on every thread):
   the issue's bound is 2 %.
2. Memory: an hour of scripted visits (people arriving at random, six a minute, each staying
   2-30 s, half of them looking) in accelerated time (5 frames/s of stream time, no sleeping);
   resident memory after a ten-minute warm-up against the end, and every visit closed.

Writes ``docs/benchmarks/audience.md`` and ``audience.json`` beside it (``--out``).

    python -m benchmarks.audience
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DOCS, add_detector_option, command_line, detector_path
from facesdk import Analyzer, FrameResult
from facesdk.audience import Audience
from facesdk.audience.simulate import simulate
from facesdk.bench import cpu_info

log = logging.getLogger("audience_bench")

BOUND_SHARE = 0.02
"""The audience layer may cost at most this share of the per-frame processing time."""
BOUND_GROWTH_MIB = 5.0
"""Resident memory may grow at most this much over an hour after warm-up."""


def rss_mib() -> float:
    """Current resident set size of this process (MiB), from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def overhead(
    model: Path, detector: Path, backend: str, seconds: float, warmup_s: float, fps: float
) -> dict[str, Any]:
    """The six-face live case with an Audience on every result: its ms per frame against the CPU's."""
    from benchmarks.stream_live import PacedCamera, panned, scene, write_video

    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "six.avi", panned(scene(6), 160), fps)
        warm = round(warmup_s * fps)
        camera = PacedCamera(video, fps, warm + round(seconds * fps))
        audience = Audience()
        spent: list[float] = []
        frames = faces = 0
        with Analyzer(model, backend=backend, detector=detector) as analyzer:
            cpu0 = wall0 = 0.0
            for result in analyzer.stream(camera, live=True, queue_size=1):
                start = time.perf_counter()
                audience.update(result)
                took = time.perf_counter() - start
                if result.index == warm:
                    cpu0, wall0 = cpu_s(), time.perf_counter()
                if result.index >= warm:
                    spent.append(took)
                    frames += 1
                    faces += len(result.faces)
            cpu = cpu_s() - cpu0
            wall = time.perf_counter() - wall0
            described = getattr(analyzer.backend, "describe", lambda: analyzer.backend.name)()
        audience.close()
    per_frame_ms = 1000.0 * sum(spent) / max(1, frames)
    cpu_per_frame_ms = 1000.0 * cpu / max(1, frames)
    return {
        "backend": described,
        "frames": frames,
        "faces_per_frame": faces / max(1, frames),
        "results_per_s": frames / wall if wall > 0 else None,
        "audience_ms_per_frame": per_frame_ms,
        "cpu_ms_per_frame": cpu_per_frame_ms,
        "share": per_frame_ms / cpu_per_frame_ms if cpu_per_frame_ms > 0 else None,
    }


class _Sampler:
    """An Audience wrapper that samples resident memory every ``every`` frames of stream time."""

    def __init__(self, audience: Audience, every: int) -> None:
        self.audience, self.every, self.frames = audience, every, 0
        self.samples: list[tuple[int, float]] = []

    def update(self, result: FrameResult) -> None:
        self.audience.update(result)
        if self.frames % self.every == 0:
            self.samples.append((self.frames, rss_mib()))
        self.frames += 1


def memory(duration_s: float, warmup_s: float, fps: float = 5.0) -> dict[str, Any]:
    """An accelerated scripted run: RSS after warm-up against the end, and visits left open."""
    audience = Audience()
    sampler = _Sampler(audience, every=int(fps * 60))
    start = time.perf_counter()
    counts = simulate(sampler, duration_s=duration_s, fps=fps)
    took = time.perf_counter() - start
    warm_frame = int(warmup_s * fps)
    after = [mib for frame, mib in sampler.samples if frame >= warm_frame]
    snapshot = audience.snapshot()
    audience.close()
    open_after_close = len(audience.visits())
    return {
        "stream_s": duration_s,
        "frames": counts["frames"],
        "people": counts["people"],
        "run_s": took,
        "rss_after_warmup_mib": after[0] if after else None,
        "rss_end_mib": rss_mib(),
        "rss_peak_after_warmup_mib": max(after) if after else None,
        "growth_mib": rss_mib() - after[0] if after else None,
        "in_view_at_end": snapshot["in_view"]["total"],
        "open_visits_after_close": open_after_close,
        "samples": sampler.samples,
    }


def render(report: dict[str, Any]) -> str:
    o, m, cpu = report["overhead"], report["memory"], report["cpu"]
    share = o["share"]
    growth = m["growth_mib"]
    lines = [
        "# Audience measurement: cost per frame and memory",
        "",
        f"`{report['command']}` on {cpu['model']} ({cpu['cores']} cores; flags: "
        + (
            ", ".join(f for f in ("avx2", "avx512_vnni", "avx512_bf16", "amx_int8") if f in cpu["flags"])
            or "none"
        )
        + f"), {report['date']}.",
        "",
        "## Cost per frame (six faces, live)",
        "",
        f"The stream benchmark's six-face live case ({o['backend']}, {report['fps']:.0f} frames/s delivered like a "
        f"camera, {report['seconds']:.0f} s after {report['warmup_s']:.0f} s of warm-up) with an `Audience` fed every "
        "result in the caller's thread.",
        "",
        "| results | faces per frame | audience ms per frame | process CPU ms per frame | share | bound |",
        "|---|---|---|---|---|---|",
        f"| {o['frames']} | {o['faces_per_frame']:.1f} | {o['audience_ms_per_frame']:.3f} | "
        f"{o['cpu_ms_per_frame']:.1f} | {100 * share:.2f}% | {100 * BOUND_SHARE:.0f}%: "
        f"{'met' if share is not None and share <= BOUND_SHARE else 'NOT met'} |",
        "",
        "## Memory over an hour of visits (accelerated)",
        "",
        f"{m['people']} scripted people over {m['stream_s'] / 60:.0f} minutes of stream time ({m['frames']} frames at "
        f"5 frames/s, run in {m['run_s']:.0f} s).",
        "",
        "| RSS after warm-up (MiB) | peak after warm-up | end | growth | bound | people in view at the end | "
        "visits open after close |",
        "|---|---|---|---|---|---|---|",
        f"| {m['rss_after_warmup_mib']:.1f} | {m['rss_peak_after_warmup_mib']:.1f} | {m['rss_end_mib']:.1f} | "
        f"{growth:+.2f} | {BOUND_GROWTH_MIB:.0f} MiB: {'met' if growth is not None and growth <= BOUND_GROWTH_MIB else 'NOT met'} | "
        f"{m['in_view_at_end']} | {m['open_visits_after_close']} |",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.audience", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", help="export directory (default: a random-init vit_pe_core_tiny_patch16_384 edge export)"
    )
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--seconds", type=float, default=15.0, help="live seconds measured after warm-up")
    p.add_argument("--warmup-seconds", type=float, default=3.0)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--memory-minutes", type=float, default=60.0, help="stream minutes of the accelerated run")
    p.add_argument("--out", type=Path, default=DOCS / "audience.md")
    add_detector_option(p)
    return p.parse_args(argv)


def _public(argv: list[str]) -> list[str]:
    """The options as a user would type them: an export named ``EXPORT_DIR``, no output path."""
    out, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word in ("--model", "--out"):
            skip = True
            if word == "--model" and i + 1 < len(argv):
                out += ["--model", "EXPORT_DIR"]
            continue
        if word.startswith(("--model=", "--out=")):
            out += ["--model", "EXPORT_DIR"] if word.startswith("--model=") else []
            continue
        out.append(word)
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    detector = detector_path(args.detector)
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model = Path(args.model)
        else:
            from benchmarks.stream import random_export

            model = random_export(Path(tmp), 384, None)
        log.info("memory: %.0f minutes of scripted visits", args.memory_minutes)
        mem = memory(args.memory_minutes * 60.0, min(600.0, args.memory_minutes * 60.0 / 6))
        log.info("overhead: six faces live for %.0f s", args.seconds)
        over = overhead(model, detector, args.backend, args.seconds, args.warmup_seconds, args.fps)
    report = {
        "command": command_line(
            "python -m benchmarks.audience", _public(sys.argv[1:] if argv is None else argv)
        ),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_info(),
        "fps": args.fps,
        "seconds": args.seconds,
        "warmup_s": args.warmup_seconds,
        "overhead": over,
        "memory": mem,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(report))
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
