"""``facesdk export build ...`` (and ``python -m facesdk.export build ...``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from facesdk.arguments import positive_int
from facesdk.contract.export_manifest import EXPORT_MANIFEST, PRECISIONS

from .onnx_export import DEFAULT_OPSET, EXPORTERS, SUPPORTED_OPSETS
from .options import ENGINE_MODES
from .tensorrt_build import TRT_TYPINGS

__all__ = ["build_parser", "main"]

log = logging.getLogger(__name__)


def build_parser(prog: str = "facesdk export") -> argparse.ArgumentParser:
    """The argument parser of the export command (one subcommand: ``build``)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Merge adapters; export ONNX and TensorRT engines."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="export a checkpoint into a validated export directory")
    build.add_argument(
        "--ckpt", type=Path, required=True, help="checkpoint directory (holds checkpoint.json)"
    )
    build.add_argument(
        "--out", type=Path, required=True, help=f"export directory to create (holds {EXPORT_MANIFEST})"
    )
    build.add_argument(
        "--precision", default="fp32", help=f"comma-separated subset of {','.join(PRECISIONS)}"
    )
    build.add_argument(
        "--max-batch", type=positive_int, default=32, help="largest batch of the dynamic axis (default 32)"
    )
    build.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET,
                       help=f"ONNX opset, one of {list(SUPPORTED_OPSETS)} (default {DEFAULT_OPSET})")  # fmt: skip
    build.add_argument("--calib", type=Path, default=None,
                       help="an existing calibration set (int8; or collect one with --calib-source)")  # fmt: skip
    build.add_argument("--calib-source", type=Path, nargs="+", action="extend", default=[], metavar="PATH",
                       help="int8: collect the calibration crops now from these photos, folders, videos or "
                       "dataset CSVs, with the checkpoint's own preprocessing")  # fmt: skip
    build.add_argument(
        "--calib-count",
        type=positive_int,
        default=1024,
        help="crops to collect (default 1024: half are held out for the INT8 gate)",
    )
    build.add_argument("--keep-calib", type=Path, default=None, metavar="DIR",
                       help="keep the collected calibration set here (default: removed after the export)")  # fmt: skip
    build.add_argument("--detector", type=Path, default=None,
                       help="YuNet model for --calib-source (default: the SDK's lookup)")  # fmt: skip
    build.add_argument("--force", action="store_true", help="replace an existing output directory")
    build.add_argument("--engines", choices=ENGINE_MODES, default="auto",
                       help="TensorRT engines for fp16/int8: auto (where TensorRT runs, else skipped with a "
                       "log line; default), tensorrt (required: an error without TensorRT), none")  # fmt: skip
    build.add_argument(
        "--onnx-only",
        action="store_true",
        help="write fp16/int8 ONNX models but no TensorRT engines (--engines none)",
    )
    build.add_argument("--workspace-gb", type=float, default=2.0, help="TensorRT workspace limit in GiB")
    build.add_argument("--timing-cache", type=Path, default=None, help="TensorRT timing cache file")
    build.add_argument("--trt-typing", choices=TRT_TYPINGS, default="auto",
                       help="strongly typed network (TensorRT 11; default) or TensorRT 10 builder flags (weak)")  # fmt: skip
    build.add_argument("--exporter", choices=EXPORTERS, default="torchscript",
                       help="torch.onnx exporter: torchscript (dynamo=False, default) or dynamo")  # fmt: skip
    build.add_argument("--int8-option", action="append", default=[], metavar="KEY=VALUE",
                       help="option for the INT8 quantizer, repeatable (e.g. accept_drop=true, method=percentile)")  # fmt: skip
    build.add_argument("--rope-layout", choices=("auto", "half", "interleaved"), default="auto",
                       help="RoPE graph layout: half (CPU runtimes fuse it), interleaved (timm's), auto: half "
                       "unless TensorRT engines are built")  # fmt: skip
    build.add_argument(
        "--parity-samples", type=positive_int, default=512, help="inputs for the engine agreement check"
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "facesdk export") -> int:
    """Run the export CLI; errors of the FaceSdkError family propagate to the dispatcher (exit 2)."""
    args = build_parser(prog).parse_args(list(sys.argv[1:] if argv is None else argv))
    from .options import ExportOptions, parse_key_values
    from .pipeline import run_export

    options = ExportOptions(
        ckpt=args.ckpt,
        out=args.out,
        precisions=args.precision,
        max_batch=args.max_batch,
        opset=args.opset,
        calib=args.calib,
        calib_sources=tuple(args.calib_source),
        calib_count=args.calib_count,
        keep_calib=args.keep_calib,
        detector=args.detector,
        force=args.force,
        onnx_only=args.onnx_only,
        engine_mode=args.engines,
        workspace_gb=args.workspace_gb,
        timing_cache=args.timing_cache,
        trt_typing=args.trt_typing,
        parity_samples=args.parity_samples,
        exporter=args.exporter,
        int8_options=parse_key_values(args.int8_option),
        rope_layout=args.rope_layout,
    )
    manifest = run_export(options)
    parity = manifest.parity
    log.info(
        "merged vs unmerged %.2g, ONNX vs torch %.2g; models: %s",
        parity["merge"]["max_abs_diff"],
        parity["onnx_vs_torch"]["max_abs_diff"],
        ", ".join(f"{k} ({v.file.path})" for k, v in manifest.models.items()),
    )
    print(options.out / EXPORT_MANIFEST)
    return 0
