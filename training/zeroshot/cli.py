"""``facesdk zeroshot``: compile a CLIP model's text tower into a checkpoint's heads.

Subcommands:
    build     encode the prompts, write a checkpoint directory (export it like any other)
    prompts   print the resolved prompts (defaults merged with --prompts) as JSON
    flops     parameters and GFLOPs: open_clip zero-shot vs the compiled checkpoint
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from facesdk.contract.checkpoint import CHECKPOINT_MANIFEST
from facesdk.outputs import check_output_dir

__all__ = ["main", "build_parser"]

log = logging.getLogger(__name__)

DEFAULT_CLIP = "PE-Core-T-16-384"


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="compile zero-shot heads into a checkpoint directory")
    build.add_argument("--clip", default=DEFAULT_CLIP, help=f"open_clip model name (default {DEFAULT_CLIP})")
    build.add_argument(
        "--pretrained",
        nargs="?",
        const="meta",
        default=None,
        metavar="TAG",
        help="load open_clip's pretrained weights (tag, default 'meta'); without it the model is random-init",
    )
    build.add_argument("--prompts", type=Path, default=None, help="prompts YAML merged onto the defaults")
    build.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    build.add_argument("--force", action="store_true", help="replace an existing output directory")
    prompts = sub.add_parser("prompts", help="print the resolved prompts as JSON")
    prompts.add_argument("--prompts", type=Path, default=None, help="prompts YAML merged onto the defaults")
    flops = sub.add_parser(
        "flops", help="parameters and GFLOPs per image: text tower at inference vs compiled"
    )
    flops.add_argument("--clip", default=DEFAULT_CLIP, help=f"open_clip model name (default {DEFAULT_CLIP})")
    flops.add_argument("--prompts", type=Path, default=None, help="prompts YAML merged onto the defaults")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "facesdk zeroshot") -> int:
    """Run the zeroshot CLI; FaceSdkError propagates to the dispatcher (exit 2)."""
    args = build_parser(prog).parse_args(list(sys.argv[1:] if argv is None else argv))
    from .prompts import load_prompts

    prompts = load_prompts(args.prompts)
    if args.command == "prompts":
        print(json.dumps(prompts.to_json(), indent=2))
        return 0
    if args.command == "flops":
        from .complexity import measure

        print(json.dumps(measure(args.clip, prompts), indent=2))
        return 0
    check_output_dir(args.out, [args.prompts], force=args.force, manifests=(CHECKPOINT_MANIFEST,))
    from .compile import build_zeroshot_checkpoint

    manifest = build_zeroshot_checkpoint(args.clip, args.out, prompts, pretrained=args.pretrained)
    log.info(
        "zero-shot checkpoint with tasks %s (%d parameters)",
        [t.name for t in manifest.tasks],
        manifest.params.get("total", 0),
    )
    print(args.out)
    return 0
