"""``facesdk data``: prepare a dataset into face crops and manifests, or summarise a mix.

facesdk data prepare NAME --root DIR --out DIR [--workers N] [--crop align5|box] [--size PX]
                          [--margin F] [--seed S] [--val-fraction F] [--format jpg|png]
                          [--detector ONNX] [--rafdb-images original|aligned|auto]
                          [--annotations CSV]
facesdk data mix MANIFEST[:WEIGHT] ... [--out plan.json]
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from facesdk.arguments import non_negative_int, positive_int
from facesdk.contract.manifest_io import atomic_write_json
from facesdk.errors import ConfigError
from facesdk.outputs import check_output_dir, check_output_file

from .manifest import PREPARE_FILE
from .mixing import MixSource, build_sampling_plan, write_combined_manifest
from .prepare import PrepareOptions, prepare_dataset
from .readers import DATASETS

__all__ = ["main", "build_parser"]

log = logging.getLogger(__name__)


def build_parser(prog: str = "facesdk data") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Prepare face datasets into facesdk manifests.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="cut face crops and write train/val(/test) manifests")
    p.add_argument("name", help=f"dataset: {', '.join(DATASETS)}")
    p.add_argument("--root", required=True, type=Path, help="the dataset's folder, as published")
    p.add_argument("--out", required=True, type=Path, help="output folder (crops, CSVs, prepare.json)")
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=min(8, os.cpu_count() or 1),
        help="worker processes (0: none)",
    )
    p.add_argument("--crop", choices=("align5", "box"), default="align5", help="crop policy (default align5)")
    p.add_argument(
        "--size", type=positive_int, default=384, help="crop side in pixels (use the model's input size)"
    )
    p.add_argument("--margin", type=float, default=0.4, help="context around the face (default 0.4)")
    p.add_argument("--interpolation", default="bicubic", help="bicubic, bilinear or nearest")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the train/validation split")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share (default 0.2)")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg", help="crop file format")
    p.add_argument("--detector", default=None, help="YuNet ONNX file (default: the SDK's model lookup)")
    p.add_argument("--min-iou", type=float, default=0.3, help="align5 with given boxes: least IoU to match")
    p.add_argument("--rafdb-images", choices=("auto", "original", "aligned"), default=None)
    p.add_argument("--annotations", default=None, help="VggFace2: the age-annotation CSV")
    p.add_argument(
        "--images-dir", default=None, help="Lagenda: the folder its img_name values are relative to"
    )
    m = sub.add_parser("mix", help="show (and save) the sampling plan of several manifests")
    m.add_argument("manifests", nargs="+", help="MANIFEST[:WEIGHT]")
    m.add_argument("--out", type=Path, default=None, help="write the plan summary as JSON")
    m.add_argument("--manifest-out", type=Path, default=None, help="also write all rows as one manifest CSV")
    return parser


def _reader_options(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    options = []
    if args.rafdb_images is not None:
        if args.name.lower().replace("-", "").replace("_", "") != "rafdb":
            raise ConfigError("--rafdb-images applies to dataset rafdb only")
        options.append(("images", args.rafdb_images))
    if args.annotations is not None:
        if not args.name.lower().startswith("vggface"):
            raise ConfigError("--annotations applies to dataset vggface2 only")
        options.append(("annotations", args.annotations))
    if args.images_dir is not None:
        if args.name.lower() != "lagenda":
            raise ConfigError("--images-dir applies to dataset lagenda only")
        options.append(("images", args.images_dir))
    return tuple(options)


def _prepare(args: argparse.Namespace) -> int:
    options = PrepareOptions(
        crop=args.crop,
        size=args.size,
        margin=args.margin,
        interpolation=args.interpolation,
        workers=args.workers,
        seed=args.seed,
        val_fraction=args.val_fraction,
        image_format=args.format,
        detector=args.detector,
        min_iou=args.min_iou,
        options=_reader_options(args),
    )
    inputs = [args.root, args.detector, getattr(args, "annotations", None)]
    check_output_dir(args.out, inputs, reuse=True, manifests=(PREPARE_FILE,))
    result = prepare_dataset(args.name, args.root, args.out, options)
    for split, path in result.manifests.items():
        log.info("%s: %s", split, path)
    log.info(
        "crops by status: %s; reader issues: %d (see %s)",
        result.status,
        result.issues,
        args.out / "report.json",
    )
    return 0


def _mix(args: argparse.Namespace) -> int:
    sources = []
    for item in args.manifests:
        path, sep, weight = item.rpartition(":")
        if not sep or not path:
            path, weight = item, "1"
        try:
            sources.append(MixSource(Path(path), float(weight)))
        except ValueError:
            raise ConfigError(f"expected MANIFEST[:WEIGHT], got {item!r}") from None
    inputs = [s.manifest for s in sources]
    for flag, path in (("--out", args.out), ("--manifest-out", args.manifest_out)):
        if path is not None:  # rewritten freely, but never onto an input or a facesdk manifest
            check_output_file(path, inputs, force=True, flag=flag)
    plan = build_sampling_plan(sources)
    for entry in plan.summary:
        log.info(
            "%-12s rows %7d  weight %.3g  share %.1f%%",
            entry["name"],
            entry["rows"],
            entry["weight"],
            100 * entry["share"],
        )
    if args.out:
        atomic_write_json(args.out, {"rows": len(plan), "sources": list(plan.summary)})
    if args.manifest_out:
        write_combined_manifest(plan, args.manifest_out)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "facesdk data") -> int:
    """Entry point of ``facesdk data``; returns the exit code."""
    args = list(argv or [])
    if args[:1] == ["data"]:
        args = args[1:]
    ns = build_parser(prog).parse_args(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return _prepare(ns) if ns.command == "prepare" else _mix(ns)
