"""``facesdk serve``: ``setup`` the serving environment, ``export`` a Triton repository, ``run`` a server."""

from __future__ import annotations

import argparse
import logging
import signal
import tempfile
import threading
from collections.abc import Sequence

from ..arguments import non_negative_int, port, positive_int

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve facesdk models with Triton Inference Server."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    setup = sub.add_parser("setup", help="create the serving environment (nvidia-pytriton, numpy<2)")
    setup.add_argument("--env", default=None, help="where (default: $FACESDK_SERVING_ENV or the user cache)")
    setup.add_argument(
        "--sdk", default=None, help="facesdk checkout or wheel to install (default: this tree)"
    )
    setup.add_argument("--force", action="store_true", help="re-create it from scratch")

    def repo_options(p: argparse.ArgumentParser, backend: str) -> None:
        p.add_argument("--model", required=True, help="export directory (export.json + model files)")
        p.add_argument(
            "--backend",
            default=backend,
            choices=("onnxruntime", "tensorrt", "python"),
            help=f"backbone the pipeline calls (default: {backend})",
        )
        p.add_argument(
            "--instances", type=positive_int, default=1, help="instances per model (instance_group count)"
        )
        p.add_argument(
            "--max-queue-delay-us", type=non_negative_int, default=2000, help="dynamic batcher queue delay"
        )
        p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
        p.add_argument("--detector", default=None, help="YuNet model file (default: the SDK's lookup)")

    export = sub.add_parser("export", help="write a Triton model repository")
    repo_options(export, "onnxruntime")
    export.add_argument("--out", required=True, help="repository directory")

    run = sub.add_parser("run", help="start Triton on 127.0.0.1 with the pipeline and the backbone")
    repo_options(run, "python")
    run.add_argument("--repository", default=None, help="write the repository here (default: a temp dir)")
    run.add_argument("--http-port", type=port, default=8000)
    run.add_argument("--grpc-port", type=port, default=8001)
    run.add_argument("--env", default=None, help="serving environment (default: as 'setup')")
    return parser


def _config(args: argparse.Namespace):  # noqa: ANN202
    from .repository import RepositoryConfig

    return RepositoryConfig(
        backend=args.backend,
        instances=args.instances,
        max_queue_delay_us=args.max_queue_delay_us,
        precision=args.precision,
    )


def _run(args: argparse.Namespace) -> int:
    from .env import find_env
    from .repository import BACKBONE, BACKBONE_PYTHON, PIPELINE, write_repository
    from .server import TritonServer

    env = find_env(args.env)
    repo = args.repository or tempfile.mkdtemp(prefix="facesdk-repo-")
    cfg = _config(args)
    write_repository(args.model, repo, cfg, args.detector)
    models = [PIPELINE, BACKBONE_PYTHON if cfg.backend == "python" else BACKBONE]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with TritonServer(repo, models, env, args.http_port, args.grpc_port) as server:
        logger.info("serving %s: http %s, grpc %s (Ctrl-C stops)", repo, server.http_url, server.grpc_url)
        try:
            while not stop.wait(1.0):
                if server.process is None or server.process.poll() is not None:
                    logger.error("tritonserver exited:\n%s", server.log_tail())
                    return 1
        except KeyboardInterrupt:
            logger.info("stopping")
    return 0


def main(argv: Sequence[str], prog: str = "facesdk serve") -> int:
    """Run ``facesdk serve``; returns the exit code."""
    args = _parser(prog).parse_args(list(argv))
    if args.command == "setup":
        from .env import create_env

        env = create_env(args.env, args.sdk, args.force)
        print(
            f"serving environment ready: {env.path} (python {env.version}, tritonserver {env.tritonserver})"
        )
        return 0
    if args.command == "export":
        from ..outputs import check_no_overlap
        from .repository import write_repository

        check_no_overlap(args.out, [args.model, args.detector])
        written = write_repository(args.model, args.out, _config(args), args.detector)
        for name, path in written.items():
            print(f"{name}\t{path}")
        return 0
    return _run(args)


if __name__ == "__main__":
    import sys

    from ..errors import run_guarded

    logging.basicConfig(level=logging.INFO)
    sys.exit(
        run_guarded(
            "python -m facesdk.serving.cli", lambda: main(sys.argv[1:], prog="python -m facesdk.serving.cli")
        )
    )
