"""``facesdk train`` and ``facesdk data``.

facesdk train --config FILE --out DIR [--resume] [--set key=value ...] [--nproc N]
facesdk data synth --out DIR [--count N] [--missing F] [--seed S] [--size PX]
facesdk data prepare|mix ...   (see ``facesdk.training.datasets.cli``)
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from facesdk.arguments import non_negative_int, positive_int
from facesdk.contract.manifest_io import atomic_write_bytes
from facesdk.errors import ConfigError
from facesdk.outputs import check_output_dir

__all__ = ["main", "train_main", "data_main"]

log = logging.getLogger(__name__)


def _train_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Train a multi-task face model from a YAML config.")
    p.add_argument(
        "--config", type=Path, default=None, help="YAML config (with --resume: default OUT/config.yaml)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state when it exists")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (dotted key, YAML value), e.g. optim.lr=3e-4",
    )
    p.add_argument(
        "--nproc",
        type=positive_int,
        default=None,
        metavar="N",
        help="train in N processes on this machine: launches torchrun (DDP; see docs/distributed.md)",
    )
    return p


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` less its ``--nproc N`` / ``--nproc=N`` (what torchrun's workers receive)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _resolve_config(args: argparse.Namespace):  # noqa: ANN202 - TrainConfig
    from .config import config_from_mapping, load_config

    saved = args.out / "config.yaml"
    if args.config is None:
        if not (args.resume and saved.is_file()):
            raise ConfigError("--config is required (only a --resume of an existing --out may omit it)")
        data = yaml.safe_load(saved.read_text())
        from .config import apply_overrides

        return config_from_mapping(apply_overrides(data, args.overrides))
    config = load_config(args.config, args.overrides)
    if args.resume and saved.is_file() and yaml.safe_load(saved.read_text()) != config.to_json():
        raise ConfigError(
            f"--resume with a config that differs from {saved}; resume with the same config "
            "(or omit --config), or train into a new --out"
        )
    return config


TRAIN_MANIFESTS = ("config.yaml", "state/state.json", "checkpoint/checkpoint.json")
"""What marks a folder as a training run's output (reused in place by ``--resume``)."""


def _check_out(args: argparse.Namespace, config: Any) -> None:
    """``--out`` may not overlap the config, the data or the weights, nor be a foreign non-empty folder."""
    weights = config.model.weights
    inputs = [*config.data.manifests(), weights[len("file:") :] if weights.startswith("file:") else None]
    if not args.resume:  # a resumed run may read its own OUT/config.yaml
        inputs.append(args.config)
    check_output_dir(args.out, inputs, reuse=True, manifests=TRAIN_MANIFESTS)


def _remove_if_only_config(out: Path) -> None:
    """A run that failed before writing anything but its config leaves no folder behind."""
    if out.is_dir() and [p.name for p in out.iterdir()] == ["config.yaml"]:
        (out / "config.yaml").unlink()
        out.rmdir()


def train_main(argv: Sequence[str], prog: str = "facesdk train") -> int:
    """Run ``facesdk train``; returns the exit code."""
    args = _train_parser(prog).parse_args(list(argv))
    config = _resolve_config(args)  # checked here, before any process is started
    _check_out(args, config)
    from .distributed import launch_torchrun, process_group

    if args.nproc is not None:
        from .distributed import rank_batch_size
        from .trainer import saved_batch_meaning

        meaning = saved_batch_meaning(args.out / "state") if args.resume else "global"
        rank_batch_size(config.optim.batch_size, args.nproc, meaning)  # refused here, once
        return launch_torchrun(args.nproc, _without_nproc(argv))
    from .trainer import Trainer

    fresh = not args.out.exists()
    with process_group(config.runtime.device, config.runtime.dist_backend) as ctx:
        trainer = Trainer(
            config,
            args.out,
            resume=args.resume,
            rank=ctx.rank,
            world_size=ctx.world_size,
            local_rank=ctx.local_rank,
        )
        text = yaml.safe_dump(config.to_json(), sort_keys=False).encode()
        trainer.reporter.save(lambda: atomic_write_bytes(args.out / "config.yaml", text))
        start = time.perf_counter()
        try:
            summary = trainer.run()
        except BaseException:
            if fresh and ctx.rank == 0:
                _remove_if_only_config(args.out)
            raise
        trainer.reporter.info(
            "done in %.1f s; best validation metrics: %s", time.perf_counter() - start, summary["best"]
        )
    return 0


def data_main(argv: Sequence[str], prog: str = "facesdk data") -> int:
    """Run ``facesdk data``: ``synth`` here, ``prepare`` and ``mix`` in ``datasets.cli``."""
    argv = list(argv)
    if argv[:1] != ["synth"]:
        from .datasets.cli import main as datasets_main

        return datasets_main(argv, prog=prog)
    from .synthetic import SynthOptions, generate_synthetic

    p = argparse.ArgumentParser(prog=f"{prog} synth", description="Write a procedural face-attribute set.")
    p.add_argument("--out", type=Path, required=True, help="output folder (images/, train.csv, val.csv)")
    p.add_argument("--count", type=positive_int, default=2000, help="number of images (default 2000)")
    p.add_argument("--missing", type=float, default=0.3, help="share of each task's labels left empty")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    p.add_argument("--size", type=positive_int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share (default 0.2)")
    a = p.parse_args(argv[1:])
    result = generate_synthetic(a.out, SynthOptions(a.count, a.missing, a.seed, a.size, a.val_fraction))
    log.info("train: %s  val: %s", result.train, result.val)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "facesdk") -> int:
    """Entry point: ``argv`` starts with ``train`` or ``data``; returns the exit code."""
    args = list(argv or [])
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args[:1] == ["train"]:
        return train_main(args[1:], prog=prog if prog != "facesdk" else "facesdk train")
    if args[:1] == ["data"]:
        return data_main(args[1:], prog=prog if prog != "facesdk" else "facesdk data")
    raise ConfigError(
        f"expected 'train' or 'data' first, got {args[:1]}; try: facesdk train --config FILE --out DIR"
    )
