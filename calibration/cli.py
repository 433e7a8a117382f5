"""``facesdk calibrate``: ``collect`` a calibration set, ``quantize`` an ONNX model with it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from facesdk.arguments import non_negative_int, positive_int
from facesdk.errors import ConfigError, FaceSdkError
from facesdk.outputs import check_output_dir, check_output_file
from facesdk.preprocess import Preprocess
from facesdk.tasks import DEFAULT_TASKS, TaskSpec

from .calibset import CALIB_MANIFEST

__all__ = ["main", "build_parser"]

log = logging.getLogger(__name__)


def build_parser(prog: str = "facesdk calibrate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="INT8 calibration sets and quantized ONNX models")
    sub = parser.add_subparsers(dest="command", required=True)
    col = sub.add_parser("collect", help="detect, crop and preprocess faces into a calibration set")
    col.add_argument(
        "--source",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        help="image folder, image, video or dataset CSV (path,age_group,gender,emotion); faces are detected",
    )
    col.add_argument(
        "--crops",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        help="folder/CSV of images that already are face crops (resized whole: crop policy 'full')",
    )
    col.add_argument("--out", type=Path, required=True, help="calibration directory (re-run to resume)")
    col.add_argument(
        "--count",
        type=positive_int,
        default=1024,
        help="crops to collect (default 1024: half are held out for the INT8 gate)",
    )
    spec = col.add_mutually_exclusive_group(required=True)
    spec.add_argument("--model", type=Path, help="export directory or .onnx: use its preprocessing and tasks")
    spec.add_argument(
        "--preprocess", type=Path, help="JSON file with a preprocessing spec (or an export.json)"
    )
    col.add_argument("--detector", type=Path, default=None, help="YuNet ONNX (default: the SDK's lookup)")
    col.add_argument("--shard-size", type=positive_int, default=64)
    col.add_argument("--frames-per-video", type=positive_int, default=256)
    col.add_argument("--seed", type=non_negative_int, default=0)
    qua = sub.add_parser("quantize", help="quantize an export's model.onnx with a calibration set")
    qua.add_argument(
        "--model", type=Path, required=True, help="export directory or FP32 .onnx with facesdk metadata"
    )
    qua.add_argument("--calib", type=Path, required=True, help="calibration directory")
    qua.add_argument("--out", type=Path, required=True, help="output .onnx (e.g. model.int8.onnx)")
    qua.add_argument(
        "--method",
        choices=("entropy", "percentile", "minmax", "auto"),
        default="entropy",
        help="activation range calibration (default entropy); auto tries all three and keeps the best",
    )
    qua.add_argument(
        "--keep-float",
        nargs="*",
        default=None,
        help="node-name/op-type patterns kept float (replaces the defaults)",
    )
    qua.add_argument(
        "--also-keep-float",
        nargs="*",
        action="extend",
        default=[],
        metavar="PATTERN",
        help="patterns kept float besides the defaults (what the accuracy gate suggests)",
    )
    qua.add_argument(
        "--threshold",
        type=float,
        default=0.98,
        help="minimum Wilson 95%% lower bound of the agreement (default 0.98)",
    )
    qua.add_argument("--accept-drop", action="store_true")
    qua.add_argument("--report", type=Path, default=None, help="write the report JSON here too")
    qua.add_argument(
        "--force",
        action="store_true",
        help="replace an existing --out/--report (never an input or export file)",
    )
    return parser


def _model_spec(path: Path) -> tuple[Preprocess, tuple[TaskSpec, ...], Path]:
    from facesdk.model_loader import resolve_model

    resolved = resolve_model(path, "onnxruntime", "fp32", True)
    return resolved.manifest.preprocess, resolved.manifest.tasks, resolved.path


def _preprocess_file(path: Path) -> Preprocess:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the preprocessing spec {path}: {exc}") from exc
    return Preprocess.from_json(data.get("preprocess", data))


def _collect(args: argparse.Namespace) -> int:
    from .collect import Source, collect

    sources = [Source(p) for p in args.source] + [Source(p, cropped=True) for p in args.crops]
    if not sources:
        raise ConfigError("give at least one --source or --crops")
    inputs = [*args.source, *args.crops, args.model, args.preprocess, args.detector]
    check_output_dir(args.out, inputs, reuse=True, manifests=(CALIB_MANIFEST,))
    if args.model is not None:
        spec, tasks, _ = _model_spec(args.model)
    else:
        spec, tasks = _preprocess_file(args.preprocess), DEFAULT_TASKS
    calib = collect(
        sources,
        args.out,
        spec,
        count=args.count,
        tasks=tasks,
        detector=args.detector,
        shard_size=args.shard_size,
        frames_per_video=args.frames_per_video,
        seed=args.seed,
    )
    frames = calib.frames
    print(
        f"{args.out}: {calib.count} crops (asked {calib.target}) from {frames.get('read', 0)} frames; "
        f"{frames.get('no_face', 0)} frame(s) with no face, {frames.get('unreadable', 0)} unreadable; "
        f"preprocessing {calib.fingerprint[:16]}…"
    )
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from facesdk.contract.manifest_io import atomic_write_json

    from .quantize import quantize_export

    inputs = [args.model, args.calib]
    check_output_file(args.out, inputs, force=args.force)
    if args.report is not None:
        check_output_file(args.report, [*inputs, args.out], force=args.force, flag="--report")
    spec, tasks, onnx_path = _model_spec(args.model)
    check_output_file(args.out, [onnx_path], force=args.force)
    report = quantize_export(
        onnx_path,
        args.calib,
        args.out,
        spec,
        tasks,
        method=args.method,
        keep_float=args.keep_float,
        also_keep_float=args.also_keep_float,
        threshold=args.threshold,
        accept_drop=args.accept_drop,
    )
    if args.report:
        atomic_write_json(args.report, report)
    keys = (
        "method",
        "agreement",
        "agreement_lower_bound",
        "relative_logit_error",
        "accuracy",
        "held_out",
        "passed",
        "method_search",
    )
    summary = {k: report[k] for k in keys if k in report}
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "facesdk calibrate") -> int:
    """Run ``collect`` or ``quantize``; returns the exit code."""
    args = build_parser(prog).parse_args(argv)
    try:
        return _collect(args) if args.command == "collect" else _quantize(args)
    except FaceSdkError as exc:  # user errors exit 2, as in every facesdk command
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
