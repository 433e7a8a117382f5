"""``facesdk audience --source 0 --model EXPORT ...``: audience measurement from cameras, live.

One Analyzer runs every ``--source`` (:meth:`facesdk.Analyzer.streams`), one
:class:`~facesdk.audience.Audience` takes every result, and its closed windows go to the sinks
asked for: JSON Lines files (``--out``), MQTT (``--mqtt``), Prometheus (``--metrics``). ``--serve``
hosts the live dashboard. Ctrl-C or SIGTERM stops the stream, and the audience closes: the last
(partial) windows are published and every sink is flushed and closed.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import logging
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from ..errors import ConfigError, SourceError
from ..outputs import check_no_overlap, check_output_dir, resolve_path

__all__ = ["build_parser", "run"]

log = logging.getLogger(__name__)

SNAPSHOT_EVERY_S = 0.5
"""How often the dashboard's and Prometheus' view of the audience is refreshed (wall time)."""
PREVIEW_EVERY_S = 0.2
"""How often the preview JPEG is re-encoded."""
RECORD_FILES = ("audience-*.jsonl", ".audience-*.jsonl.*.tmp")
"""What the JSON Lines sink writes: a records folder holding only these is this command's own."""


class _Stop(Exception):
    """Raised in the main thread by SIGINT (Ctrl-C) or SIGTERM: leave the stream, close cleanly."""


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The live command's options."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="audience measurement from cameras: visits, attention and k-anonymous aggregates, "
        "published to files, MQTT, Prometheus and a live page",
    )
    parser.add_argument(
        "--source", action="append", required=True, help="camera index, video file or URL; repeat for several"
    )
    parser.add_argument("--model", required=True, help="export directory, .onnx or .engine file")
    parser.add_argument(
        "--backend", default="auto", choices=("auto", "onnxruntime", "openvino", "tensorrt", "torch")
    )
    parser.add_argument("--detector", default=None, help="YuNet model path (default: documented lookup)")
    parser.add_argument("--out", default=None, help="folder for JSON Lines records (created; reused if ours)")
    parser.add_argument("--mqtt", default=None, metavar="HOST[:PORT]", help="publish records to this broker")
    parser.add_argument(
        "--mqtt-topic", default="facesdk/audience", help="topic prefix (default: %(default)s)"
    )
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="[HOST]:PORT",
        help="serve Prometheus metrics (default host: loopback)",
    )
    parser.add_argument(
        "--live-metrics",
        action="store_true",
        help="also export the people in view and looking now to Prometheus (per person: off by default)",
    )
    parser.add_argument(
        "--serve",
        default=None,
        metavar="[HOST]:PORT",
        help="host the live dashboard (default host: loopback)",
    )
    parser.add_argument(
        "--preview",
        action="store_true",
        help="show the annotated camera on the dashboard (one source, loopback)",
    )
    parser.add_argument(
        "--content", default=None, metavar="CSV", help="content schedule: start,end,content rows"
    )
    parser.add_argument(
        "--window-s", type=float, default=60.0, help="aggregation window (default: %(default)s)"
    )
    parser.add_argument("--k", type=int, default=3, help="k-anonymity: people per published cell (default 3)")
    parser.add_argument(
        "--max-frames", type=int, default=None, help="stop after this many frames (all sources)"
    )
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.preview and not args.serve:
        raise ConfigError("--preview shows the camera on the dashboard; give --serve [HOST]:PORT too")
    if args.preview and len(args.source) > 1:
        raise ConfigError(f"--preview shows one camera; got {len(args.source)} --source options")
    if args.live_metrics and not args.metrics:
        raise ConfigError("--live-metrics adds to the Prometheus metrics; give --metrics [HOST]:PORT too")
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {args.max_frames}")
    if not (args.out or args.mqtt or args.metrics or args.serve):
        log.warning("no --out, --mqtt, --metrics or --serve: the audience is measured and published nowhere")


def _records_folder(out: str, inputs: Sequence[str | None]) -> Path:
    """``--out`` resolved: new, empty, or holding only this command's record files (runs append)."""
    folder = resolve_path(out)
    if not (folder.is_dir() and any(folder.iterdir())):
        return check_output_dir(out, inputs, reuse=True, manifests=())
    check_no_overlap(folder, inputs, "--out")
    foreign = sorted(
        p.name for p in folder.iterdir() if not any(fnmatch.fnmatch(p.name, pat) for pat in RECORD_FILES)
    )
    if foreign:
        raise ConfigError(
            f"--out {out} holds files this command did not write ({', '.join(foreign[:3])}); "
            "name a new or empty folder, or one with audience records only"
        )
    return folder


def _sinks(args: argparse.Namespace, stack: contextlib.ExitStack, latest: Any) -> list[Any]:
    """The sinks asked for, each closed by ``stack`` (also when a later one cannot start)."""
    from .sinks.mqtt import DEFAULT_PORT, parse_host_port

    sinks: list[Any] = []
    mqtt = None

    def add(sink: Any) -> Any:
        sinks.append(sink)
        stack.callback(sink.close)
        return sink

    if args.out:
        from .sinks import JsonLinesSink

        inputs = [args.model, args.content, *(s for s in args.source if Path(s).exists())]
        add(JsonLinesSink(_records_folder(args.out, inputs)))
    if args.mqtt:
        from .sinks.mqtt import MqttSink

        host, port = parse_host_port(args.mqtt, DEFAULT_PORT, default_host="")
        if not host:
            raise ConfigError(f"--mqtt needs a broker host, got {args.mqtt!r}")
        mqtt = add(MqttSink(host, port, topic=args.mqtt_topic))
    if args.metrics:
        from .sinks.prometheus import PrometheusSink

        host, port = parse_host_port(args.metrics, 9100)
        add(
            PrometheusSink(
                host,
                port,
                live=latest.get if args.live_metrics else None,
                mqtt=mqtt.stats if mqtt is not None else None,
            )
        )
    return sinks


def _results(analyzer: Any, args: argparse.Namespace, preview: Any) -> Iterator[Any]:
    """Every source's results; with ``--preview`` (one source) the annotated frame goes to ``preview``."""
    if not args.preview:
        multi = analyzer.streams(args.source)
        with contextlib.closing(multi):
            yield from multi
        for source, error in multi.errors.items():
            log.warning("source %s failed: %s", source, error)
        if multi.errors and len(multi.errors) == len(multi.sources):
            failures = "; ".join(f"{name}: {error}" for name, error in multi.errors.items())
            raise SourceError(f"every source failed ({failures}); check --source")
        return
    import cv2

    from ..cli.demo import draw_results

    stream = analyzer.stream_frames(args.source[0])
    encoded = 0.0
    with contextlib.closing(stream):
        for frame, result in stream:
            now = time.monotonic()
            if now - encoded >= PREVIEW_EVERY_S:
                ok, jpeg = cv2.imencode(
                    ".jpg", draw_results(frame.copy(), result), [cv2.IMWRITE_JPEG_QUALITY, 80]
                )
                preview.set(jpeg.tobytes() if ok else None)
                encoded = now
            yield result


def run(args: argparse.Namespace) -> int:
    """Measure until the sources end, ``--max-frames``, Ctrl-C or SIGTERM; returns the exit code."""
    from ..analyzer import Analyzer
    from .audience import Audience, AudienceConfig
    from .dashboard import Dashboard, Latest
    from .periods import read_schedule

    _check(args)
    schedule = read_schedule(args.content) if args.content else None
    config = AudienceConfig(window_s=args.window_s, k=args.k)
    latest: Latest[dict[str, Any]] = Latest()
    preview: Latest[bytes] = Latest()
    frames, stopped_by = 0, "the end of the sources"
    with contextlib.ExitStack() as stack:
        sinks = _sinks(args, stack, latest)
        audience = Audience(config, sinks=sinks, schedule=schedule)
        stack.callback(audience.close)  # after the stream: the last windows, then every sink closed
        if args.serve:
            host, port = _serve_address(args.serve)
            board = Dashboard(latest.get, host, port, preview=preview.get if args.preview else None)
            stack.callback(board.close)
            log.info("dashboard on %s", board.url)
        analyzer = stack.enter_context(Analyzer(args.model, args.backend, args.detector))
        stop = stack.enter_context(_Interrupts())
        results = _results(analyzer, args, preview)
        stack.callback(results.close)  # stops the capture threads before the audience closes
        shown = 0.0
        try:
            for result in results:
                with stop.deferred():  # a signal here waits until the frame is fully counted
                    audience.update(result)
                frames += 1
                if args.serve or args.live_metrics:
                    now = time.monotonic()
                    if now - shown >= SNAPSHOT_EVERY_S:
                        latest.set(audience.snapshot())
                        shown = now
                if args.max_frames is not None and frames >= args.max_frames:
                    stopped_by = "--max-frames"
                    break
        except _Stop as signal_:
            stopped_by = str(signal_)
        log.info("stopping after %d frame(s) (%s): publishing the last windows", frames, stopped_by)
    return 0


def _serve_address(text: str) -> tuple[str, int]:
    from .sinks.mqtt import parse_host_port

    return parse_host_port(text, 8080)


class _Interrupts:
    """SIGINT and SIGTERM raise :class:`_Stop` in the main thread, except inside :meth:`deferred`,
    where they are held until the block ends; the previous handlers come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._busy = False
        self._pending: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        for number in self.SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self._busy:
            self._pending = name
        else:
            raise _Stop(name)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._busy = True
        try:
            yield
        finally:
            self._busy = False
        if self._pending is not None:
            raise _Stop(self._pending)
