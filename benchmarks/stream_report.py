"""The report of ``benchmarks/stream.py``: the verdict against the targets, the Markdown page and its plot.

Targets (issue 25, "Done when"), judged from the run's numbers only:

- live camera at 25 frames/s, one face and six faces, ONNX Runtime FP32 and ``auto``: at most 2%
  of frames dropped, capture-to-result latency p95 at most 60 ms, no estimate older than 1.0 s, at
  most 1% of faces in results without an estimate;
- faces coming and going: first estimate p95 at most 0.5 s after a face appears with ``auto``,
  1 s with ONNX Runtime FP32;
- four cameras at 15 frames/s, six faces each, one ``Analyzer.streams``, ``auto``: at most 2%
  dropped per camera, no estimate older than 1.5 s (other backends: what they reach);
- video files (waiting mode, default schedule and overlap): one face 30 frames/s, six faces 40.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["best_split", "checks", "plot", "render"]

LIVE_LIMITS = (
    ("dropped_share", "frames dropped", 0.02, "%"),
    ("latency_ms.p95", "latency p95", 60.0, "ms"),
    ("estimate_age_s.max", "oldest estimate", 1.0, "s"),
    ("unestimated_share", "faces without an estimate", 0.01, "%"),
)
"""(number, name, most allowed, unit) for the one- and six-face live runs."""
CAMERAS_LIMITS = (
    ("dropped_share", "frames dropped (worst camera)", 0.02, "%"),
    ("estimate_age_s.max", "oldest estimate", 1.5, "s"),
)
"""The many-camera run's targets (``auto`` only; other backends report what they reach)."""
CAMERAS_TARGET_BACKENDS = ("auto",)
FIRST_ESTIMATE_P95_S = {"auto": 0.5, "onnxruntime": 1.0}
"""Most seconds from a face's first frame to its first estimate (p95), per backend."""
THROUGHPUT_FPS = {"one": 30.0, "six": 40.0}
"""Frames/s of the video files in waiting mode with the default schedule and overlap."""
OUTSIDE_TARGET = 0.15
"""With scheduling and overlap off, the most of the caller's time per frame spent outside the backbone call."""


def _get(row: Mapping[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _check(
    run: str, target: str, value: float | None, limit: float | None, unit: str, at_least: bool = False
) -> dict[str, Any]:
    """One number against its limit (``None``: no target, reported only; no value: failed)."""
    if limit is None:
        passed = None
    elif value is None:
        passed = False
    else:
        passed = value >= limit if at_least else value <= limit + 1e-12
    return {"run": run, "target": target, "value": value, "limit": limit, "unit": unit,
            "at_least": at_least, "passed": passed}  # fmt: skip


def _live_checks(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    run, backend = f"{row['case']}, {row['backend']}", row["backend"]
    if row.get("first_estimate") is not None:
        value = row["first_estimate"]["delay_s"]["p95"]
        return [_check(run, "first estimate p95", value, FIRST_ESTIMATE_P95_S.get(backend), "s")]
    if row["cameras"] > 1:
        limits = [
            (k, n, lim if backend in CAMERAS_TARGET_BACKENDS else None, u) for k, n, lim, u in CAMERAS_LIMITS
        ]
        if backend not in CAMERAS_TARGET_BACKENDS:  # what it reaches, and the age it holds
            limits += [("estimate_age_s.p95", "estimate age p95", None, "s"), ("latency_ms.p95", "latency p95", None, "ms")]  # fmt: skip
        return [_check(run, name, _get(row, key), limit, unit) for key, name, limit, unit in limits]
    return [_check(run, name, _get(row, key), limit, unit) for key, name, limit, unit in LIVE_LIMITS]


def checks(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every target of the module doc against this run's numbers, in report order."""
    out = [c for row in report.get("live", []) for c in _live_checks(row)]
    for row in report.get("rows", []):
        faces = "one face" if row["video"] == "one" else "six faces"
        run = f"{faces}, {row['backend']}, video file"
        if row["schedule"] and row["overlap"]:
            out.append(_check(run, "throughput", row["fps"], THROUGHPUT_FPS[row["video"]], "frames/s", True))
        elif not row["schedule"] and not row["overlap"]:
            total = row["threads_ms_per_frame"].get("detect + backbone")
            infer = row["stage_ms"].get("infer")
            share = 1.0 - infer / total if total and infer is not None else None
            out.append(_check(f"{run}, scheduling and overlap off", "share outside the backbone call", share,
                              OUTSIDE_TARGET, "%"))  # fmt: skip
    return out


def best_split(rows: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Per runtime, the thread split that serves best.

    A split *serves* when it drops at most 2% and keeps every estimate within 1.0 s; among the
    splits that serve (or all, when none does), the lowest latency p95 wins, then the lowest
    estimate age p95.
    """

    def key(row: Mapping[str, Any]) -> tuple[bool, float, float]:
        dropped, age = row.get("dropped_share"), _get(row, "estimate_age_s.max")
        serves = dropped is not None and dropped <= 0.02 and age is not None and age <= 1.0
        p95, age95 = _get(row, "latency_ms.p95"), _get(row, "estimate_age_s.p95")
        return (not serves, float("inf") if p95 is None else p95, float("inf") if age95 is None else age95)

    best: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if row["runtime"] not in best or key(row) < key(best[row["runtime"]]):
            best[row["runtime"]] = row
    return best


# ------------------------------------------------------------------------------ formatting
def _f(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _value(x: float | None, unit: str) -> str:
    if x is None:
        return "n/a"
    if unit == "%":
        return f"{100 * x:.1f}%"
    if unit == "ms":
        return f"{x:.0f} ms"
    if unit == "s":
        return f"{x:.2f} s"
    return f"{x:.1f} {unit}"


def _limit(c: Mapping[str, Any]) -> str:
    sign = "≥" if c["at_least"] else "≤"
    limit = f"{100 * c['limit']:g}%" if c["unit"] == "%" else f"{c['limit']:g} {c['unit']}"
    return f"{sign} {limit}"


def _table(title: str, intro: str, columns: tuple[str, ...], rows: Iterable[list[str]]) -> list[str]:
    """A ``##`` section with its paragraph (none when ``intro`` is empty) and a Markdown table of ``rows``."""
    return [
        "",
        f"## {title}",
        "",
        *([intro, ""] if intro else []),
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(cells) + " |" for cells in rows),
    ]


def _pcts(p: Mapping[str, Any], keys: tuple[str, ...], digits: int) -> str:
    return " / ".join(_f(p.get(k), digits) for k in keys)


def _live_cells(r: Mapping[str, Any]) -> list[str]:
    first = r.get("first_estimate")
    stages = r["stages"]
    return [
        _value(r["dropped_share"], "%"),
        _pcts(r["latency_ms"], ("p50", "p95"), 0),
        _pcts(r["estimate_age_s"], ("p50", "p95", "max"), 2),
        _value(r["unestimated_share"], "%"),
        _first_cell(first) if first else "",
        f"{_f(stages.get('crops_per_s'))} / {_f(stages.get('ms_per_call'), 0)}",
    ]


def _first_cell(first: Mapping[str, Any]) -> str:
    if not first["episodes"]:
        return "no whole visit measured (needs a longer run)"
    return f"{_pcts(first['delay_s'], ('p50', 'p95'), 2)} ({first['never']} of {first['episodes']} never)"


LIVE_COLUMNS = ("frames dropped", "latency p50 / p95 (ms)", "estimate age p50 / p95 / max (s)",
                "faces without estimate", "first estimate p50 / p95 (s)", "backbone crops/s / ms per call")  # fmt: skip


def _delivered(report: Mapping[str, Any]) -> str:
    """Whether the paced cameras kept their rate (a camera that could not is named; its run still counts)."""
    slow = [
        f"{r['case']}, {r['backend']}: {_f(r['delivered_fps'])} of {r['fps']:g}"
        for r in report["live"]
        if (r.get("delivered_fps") or 0.0) < 0.95 * r["fps"]
    ]
    if not slow:
        return "Every camera delivered its frames at its rate (within 5%)."
    return (
        "Cameras that could not keep their rate (frames/s delivered; reading the video file was too slow): "
        + ("; ".join(slow) + ".")
    )


def _verdict(report: Mapping[str, Any]) -> list[str]:
    """One bullet per run: each target, the number and pass or fail; then how many passed."""
    lines, by_run = [], {}
    for c in report["checks"]:
        by_run.setdefault(c["run"], []).append(c)
    for run, found in by_run.items():
        parts = []
        for c in found:
            if c["passed"] is None:
                parts.append(f"{c['target']} {_value(c['value'], c['unit'])} (no target: reached)")
            else:
                verdict = "pass" if c["passed"] else "FAIL"
                parts.append(f"{c['target']} {_value(c['value'], c['unit'])} ({_limit(c)}) **{verdict}**")
        lines.append(f"- {run}: " + "; ".join(parts) + ".")
    judged = [c for c in report["checks"] if c["passed"] is not None]
    met = sum(c["passed"] for c in judged)
    return [
        "",
        "## Verdict",
        "",
        f"On {report['cpu_line']}, from this run's numbers only: **{met} of {len(judged)} targets met**. "
        "Live numbers are the worst round's.",
        "",
        *lines,
    ]


def _split_section(report: Mapping[str, Any]) -> list[str]:
    rows = report.get("thread_split")
    if not rows:
        return []
    lines = _table(
        "Thread split (six faces live)",
        "The six-face live run with the two cores split between the detector (`cv2.setNumThreads`) and the "
        "backbone (ONNX Runtime `intra_op_threads`, OpenVINO `num_threads`). A split serves when it drops at "
        "most 2% and keeps every estimate within 1.0 s; among those (or all, when none does) the lowest "
        "latency p95 is best, then the lowest estimate age p95.",
        ("runtime", "detector threads", "backbone threads", *LIVE_COLUMNS[:4]),
        ([r["runtime"], str(r["detector_threads"]), str(r["backbone_threads"]), *_live_cells(r)[:4]] for r in rows),
    )  # fmt: skip
    lines.append("")
    for runtime, r in best_split(rows).items():
        lines.append(
            f"- Best for {runtime} ({r['path']}): **detector {r['detector_threads']} thread(s), backbone "
            f"{r['backbone_threads']}**: latency p95 {_value(_get(r, 'latency_ms.p95'), 'ms')}, estimate age p95 "
            f"{_value(_get(r, 'estimate_age_s.p95'), 's')}, max {_value(_get(r, 'estimate_age_s.max'), 's')}, "
            f"{_value(r['dropped_share'], '%')} dropped."
        )
    return lines


def _priority_section(report: Mapping[str, Any]) -> list[str]:
    rows = report.get("priority")
    if not rows:
        return []
    return _table(
        "The backbone below the frame path, one call or two",
        "ONNX Runtime FP32 with the backbone's threads (the classifier's and ONNX Runtime's pool) at niceness 0, "
        "the process's own priority, at `ScheduleConfig.backbone_nice`'s default and at 19, where the frame path "
        "(capture, detect, track, label) goes first whenever both want a core; and with one backbone call at a time "
        "(`parallel_calls=1`) against the backend's default (a second call while the live frame path drops nothing "
        "and takes at most half the cores). Same runs as above, rounds alternating, each number the worst round's.",
        ("case", "backbone_nice", "calls at once", *LIVE_COLUMNS[:4], LIVE_COLUMNS[-1]),
        (
            [
                r["case"],
                str(r["backbone_nice"]),
                str(r.get("parallel_calls", 1)),
                *_live_cells(r)[:4],
                _live_cells(r)[-1],
            ]
            for r in rows
        ),
    )


def _throughput_cells(r: Mapping[str, Any]) -> list[str]:
    age = r["estimate_age_s"]
    return [
        "1" if r["video"] == "one" else "6",
        r["backend"],
        "on" if r["schedule"] else "off",
        "on" if r["overlap"] else "off",
        f"**{_f(r['fps'])}** ({', '.join(_f(x) for x in r['fps_rounds'])})",
        _f(r["crops_per_frame"], 2),
        f"{_f(age['p50'], 2)} / {_f(age['p95'], 2)} / {_f(age['max'], 2)}",
        ", ".join(f"{k} {v:.1f}" for k, v in r["threads_ms_per_frame"].items()),
    ]


def _detector_cells(d: Mapping[str, Any]) -> list[str]:
    small = d["smallest_face_px"]
    return [
        str(d["max_side"]),
        f"{d['ms']:.1f}",
        str(d["faces"]),
        f"{small[0]} x {small[1]}" if small else "none",
    ]


def render(report: Mapping[str, Any]) -> str:
    """The Markdown page (``docs/benchmarks/stream.md``)."""
    model, come = report["model"], report["come_and_go"]
    paths = "; ".join(f"`{b}`: {p}" for b, p in report["paths"].items())
    built = (
        f"`{model['name']}` at {model['size']} px" + (f", {model['depth']} blocks" if model["depth"] else "")
        + ", random init, three heads (age, gender, emotion), fp32 ONNX (a random-init backbone times like a "
        "trained one)"
        if model["size"]
        else "the export given with `--model`"
    )  # fmt: skip
    lines = [
        "# Streams: live cameras, video files and the detector",
        "",
        f"Measured by `{report['command']}` (from the repository's root; building the model needs the "
        "`[train,export]` extras, `--model EXPORT_DIR` takes any export instead) on "
        f"{report['cpu_line']} in {report['minutes']:.1f} min "
        f"(load average {report['load_start']:.1f} at the start, {report['load_end']:.1f} at the end). The "
        "detector comes from the SDK's lookup (`facesdk models fetch` puts it there); `--detector PATH` names "
        f"another file. Model: {built}. Backends: {paths}.",
    ]
    lines += _table(
        "Live cameras",
        f"Frames of 1280 x 720 videos made from `skimage.data.astronaut()` delivered like a camera: at "
        f"{report['fps']:g} frames/s ({report['cameras_fps']:g} for the {report['cameras']} cameras) into "
        "`Analyzer.stream(..., live=True, queue_size=1)` (`Analyzer.streams` for the cameras), which drops the "
        "oldest frame when behind; the default, asynchronous mode. Each run: "
        f"{report['warmup_seconds']:g} s of warm-up, then {report['live_seconds']:g} s measured; "
        f"{report['rounds']} round(s) in alternating order, each number the worst round's. Dropped: frames the "
        "camera delivered that never became a result (the worst camera of the cameras run). Latency: capture to "
        "result. Estimate age: `estimate_age_s` of estimated faces. Without estimate: faces in results with "
        f"`estimated` false. Come and go: six tiles, each shown {come['on_s']:g} s of every {come['cycle_s']:g} s, "
        "one appearing about every second; first estimate: from the frame a tile appears in to the first result "
        "that shows it estimated (a tile never estimated counts as its whole visit). Backbone: crops a second "
        "and ms per call over the run.",
        ("case", "backend", *LIVE_COLUMNS),
        ([r["case"], r["backend"], *_live_cells(r)] for r in report["live"]),
    )
    lines += ["", _delivered(report)]
    lines += _verdict(report)
    lines += _split_section(report)
    lines += _priority_section(report)
    lines += _table(
        "Throughput and freshness (video files read as fast as the pipeline takes them)",
        f"The one- and six-face videos (six as 3 x 2 tiles of 340 px), panned 2 px per frame, in waiting mode: "
        f"{report['frames']} frames per scheduled run, {report['frames_unscheduled']} per unscheduled one; "
        "frames/s over all rounds, each round's in brackets. Detector at the stream size (longest side "
        f"{report['stream_max_side']}).",
        ("faces", "backend", "schedule", "overlap", "frames/s", "crops/frame", "estimate age p50 / p95 / max (s)",
         "ms per frame in each thread"),
        (_throughput_cells(r) for r in report["rows"]),
    )  # fmt: skip
    lines += _table(
        "Detector input size",
        "YuNet on the six-face 1280 x 720 frame at each longest side; the smallest face is the astronaut's "
        "face box (frame pixels) at the last size found while shrinking it in 2% steps on the same canvas.",
        ("max_side", "ms (median)", "faces found (of 6)", "smallest face found (w x h px)"),
        (_detector_cells(d) for d in report["detector"]),
    )
    lines += ["", f"![live latency and video frames/s]({report['plot']})", ""]
    return "\n".join(lines)


def plot(report: Mapping[str, Any], path: Path) -> None:
    """Live latency p95 per run (60 ms target) beside the video files' frames/s (targets dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    live, rows = report["live"], report["rows"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 4.2))
    left.bar(range(len(live)), [_get(r, "latency_ms.p95") or 0.0 for r in live], color="tab:blue")
    left.axhline(60.0, linestyle="--", linewidth=1, color="tab:red")
    left.set_xticks(range(len(live)), [f"{r['case']}\n{r['backend']}" for r in live], fontsize=7)
    left.set_ylabel("latency p95 (ms)")
    left.set_title("live cameras (target 60 ms)")
    labels = [
        f"{'1' if r['video'] == 'one' else '6'} face(s)\nsched {'on' if r['schedule'] else 'off'}, "
        f"ovl {'on' if r['overlap'] else 'off'}\n{r['backend']}"
        for r in rows
    ]
    right.bar(range(len(rows)), [r["fps"] or 0.0 for r in rows],
              color=["tab:green" if r["schedule"] else "tab:gray" for r in rows])  # fmt: skip
    for target in THROUGHPUT_FPS.values():
        right.axhline(target, linestyle="--", linewidth=1, color="tab:red")
    right.set_xticks(range(len(rows)), labels, fontsize=6)
    right.set_ylabel("frames/s")
    right.set_title("video files, waiting mode")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
