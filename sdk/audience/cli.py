"""``facesdk audience``: live measurement from cameras, and actions on audience records.

``facesdk audience --source 0 --model EXPORT ...`` (options first, no action word) runs the live
command (:mod:`facesdk.audience.live`); ``report`` and ``simulate`` work on records.

Each action is a ``(build_parser, run)`` pair in :data:`ACTIONS`; ``main`` dispatches on the
first word, so a new action is one more entry.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from ..errors import ConfigError
from ..outputs import StagedDir, check_output_dir

__all__ = ["ACTIONS", "main"]

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


def _report_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="HTML report with charts from audience JSON Lines"
    )
    parser.add_argument("records", nargs="+", help="JSON Lines files, or folders of them")
    parser.add_argument("--out", required=True, help="folder to write report.html into")
    parser.add_argument("--force", action="store_true", help="replace an existing report folder")
    return parser


def _report(args: argparse.Namespace) -> int:
    from .report import read_records, render_report

    out = check_output_dir(args.out, args.records, force=args.force, manifests=(REPORT_FILE,))
    records = read_records(args.records)
    if not records:
        raise ConfigError(f"no audience records in {' '.join(args.records)}")
    staging = StagedDir(out, force=args.force)
    with staging as folder:
        (folder / REPORT_FILE).write_text(render_report(records))
        staging.commit()
    log.info("wrote %s from %d records", out / REPORT_FILE, len(records))
    return 0


def _simulate_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="scripted visitors through the audience layer, records written as JSON Lines"
    )
    parser.add_argument("--out", required=True, help="folder for the JSON Lines records (created)")
    parser.add_argument("--minutes", type=float, default=60.0, help="scripted time (default 60)")
    parser.add_argument(
        "--per-minute", type=float, default=6.0, help="people arriving per minute (default 6)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _simulate(args: argparse.Namespace) -> int:
    from .audience import Audience
    from .simulate import simulate
    from .sinks import JsonLinesSink

    out = check_output_dir(args.out, (), reuse=True, manifests=())
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"--out {args.out} is not empty; name a new or empty folder")
    sink = JsonLinesSink(out)
    with Audience(sinks=[sink]) as audience:
        done = simulate(audience, duration_s=args.minutes * 60.0, per_minute=args.per_minute, seed=args.seed)
    log.info(
        "%d people in %d frames; records in %s",
        done["people"],
        done["frames"],
        ", ".join(map(str, sink.written)),
    )
    return 0


ACTIONS: dict[str, tuple[Callable[[str], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {
    "report": (_report_parser, _report),
    "simulate": (_simulate_parser, _simulate),
}


def main(argv: Sequence[str] | None = None, prog: str = "facesdk audience") -> int:
    args = list(argv or ())
    if args and args[0].startswith("--") and args[0] != "--help":
        from .live import build_parser, run

        return run(build_parser(prog).parse_args(args))
    if not args or args[0] not in ACTIONS:
        names = ", ".join(ACTIONS)
        print(
            f"usage: {prog} --source SOURCE --model EXPORT [options]   (live; '{prog} --source x --help')\n"
            f"       {prog} {{{names}}} ...\n\nactions: {names}; '{prog} ACTION --help' for options"
        )
        return 0 if args and args[0] in ("-h", "--help") else 2
    build, run = ACTIONS[args[0]]
    return run(build(f"{prog} {args[0]}").parse_args(args[1:]))
