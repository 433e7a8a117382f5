"""``facesdk models``: locate (``path``) or download (``fetch``) the YuNet face detector."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..faces.model_store import (
    DETECTOR_SHA256,
    DETECTOR_URL,
    default_fetch_dir,
    fetch_detector_model,
    find_detector_model,
)
from ..outputs import created_dir

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Locate or download the face detector model.")
    sub = parser.add_subparsers(dest="action", required=True)
    fetch = sub.add_parser("fetch", help="download the YuNet model, verify its sha256, install it")
    fetch.add_argument("--dir", default=None, help=f"target folder (default: {default_fetch_dir()})")
    fetch.add_argument("--url", default=DETECTOR_URL, help="download URL (file:// works for mirrors)")
    fetch.add_argument("--sha256", default=None,
                       help=f"expected sha256 (a pin; only the store's own is accepted: {DETECTOR_SHA256[:12]}...)")  # fmt: skip
    fetch.add_argument("--force", action="store_true", help="download even if a valid copy exists")
    sub.add_parser(
        "path", help="print the verified detector path that would be used (exit 2 if none or damaged)"
    )
    return parser


def main(argv: Sequence[str], prog: str = "facesdk models") -> int:
    """Run ``facesdk models fetch|path``; returns the exit code."""
    args = _parser(prog).parse_args(list(argv))
    if args.action == "fetch":
        if args.dir is not None and Path(args.dir).exists() and not Path(args.dir).is_dir():
            raise ConfigError(f"--dir {args.dir} is a file; name the folder to install the detector into")
        with (
            created_dir(args.dir) if args.dir else contextlib.nullcontext()
        ):  # a failure leaves no empty --dir
            path = fetch_detector_model(args.dir, url=args.url, sha256=args.sha256, force=args.force)
        print(path)
        return 0
    # A missing or damaged detector raises a FaceSdkError: the facesdk CLI prints it as one line
    # (the damaged case names 'facesdk models fetch') and exits 2.
    print(find_detector_model())
    return 0
