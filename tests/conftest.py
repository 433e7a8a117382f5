"""Session fixtures shared across stages: smoke training runs whose checkpoints others reuse."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facesdk.faces.model_store import PACKAGED_DETECTOR
from facesdk.testing import make_tiny_export
from tests.helpers import train_command

ROOT = Path(__file__).resolve().parents[1]
YUNET = PACKAGED_DETECTOR


@pytest.fixture(scope="session")
def yunet_path() -> Path:
    """The YuNet face detector that every stage's tests use; skips when it is not there."""
    if not YUNET.is_file():
        pytest.skip(f"YuNet test model not found at {YUNET}")
    return YUNET


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """``skimage.data.astronaut()`` as BGR (one face, where ``yunet_path`` finds it)."""
    data = pytest.importorskip("skimage.data")
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny torch-free export (``facesdk.testing.make_tiny_export``, batch up to 8)."""
    directory = tmp_path_factory.mktemp("export")
    make_tiny_export(directory, max_batch=8)
    return directory


@pytest.fixture
def tensorrt_gpu() -> None:
    """Skip, naming what is missing, unless TensorRT, cuda-python and a GPU can build engines here."""
    pytest.importorskip(
        "tensorrt", reason="TensorRT is not installed (pip install 'facesdk[tensorrt]' on a GPU machine)"
    )
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed (facesdk[tensorrt])")
    from facesdk.export.tensorrt_build import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason:
        pytest.skip(f"no TensorRT build possible here: {reason}")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train ``configs/smoke.yaml`` once (subprocess) and return its output folder.

    ``<out>/checkpoint`` is a trained checkpoint directory (the export and SDK tests reuse it).
    """
    pytest.importorskip("torch", reason="the smoke run needs the [train] extra")
    out = tmp_path_factory.mktemp("smoke_run")
    cmd = train_command(ROOT / "configs/smoke.yaml", out)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        pytest.fail(f"smoke training failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return out


# Every trainable adaptation method, with options that fit the smoke backbone (depth 2).
METHOD_OPTIONS: dict[str, dict] = {
    "lora": {"rank": 2},
    "dora": {"rank": 2},
    "full": {},
    "linear_probe": {},
    "partial": {"blocks": 1},
    "norm": {},
    "vera": {"rank": 16},
    "galore": {"rank": 4, "update_proj_gap": 2},
    "mtlora": {"rank": 2, "task_rank": 2},
}
NOT_TRAINED = {"zeroshot"}  # built from a CLIP model by `facesdk zeroshot build`, not trained
SMOKE_TINY = (
    "data.synthetic={count: 48, missing: 0.3, seed: 0, size: 32}",
    "optim.epochs=1",
    "optim.batch_size=16",
    "optim.warmup_steps=0",
    "runtime.threads=1",
)
"""Overrides that shrink ``configs/smoke.yaml`` to one epoch of three steps."""


@dataclass(frozen=True)
class MethodRun:
    """One method trained on the shrunken smoke config (``method_runs``).

    Attributes:
        out: The run's output folder (``out / "checkpoint"`` is its checkpoint).
        probe: A fixed input batch; ``logits`` are the trained model's outputs on it.
        logits: ``{task: logits}`` of the in-memory model at the end of training (eval mode).
        log: The run's log messages.
        lrs: Initial learning rate per optimizer group name.
        recomputed: Whether the backbone ran with gradient checkpointing.
    """

    out: Path
    probe: Any
    logits: dict[str, Any]
    log: list[str]
    lrs: dict[str, float]
    recomputed: bool


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def train_smoke(method: str, out: Path, *overrides: str) -> MethodRun:
    """Train ``method`` in this process on ``configs/smoke.yaml`` shrunk by :data:`SMOKE_TINY`.

    The trainer's process-wide settings (threads, deterministic algorithms) are restored after.
    """
    import torch

    from facesdk.training.config import load_config
    from facesdk.training.trainer import Trainer

    spec = {"name": method, **METHOD_OPTIONS[method]}
    config = load_config(ROOT / "configs/smoke.yaml", [*SMOKE_TINY, f"method={spec}", *overrides])
    logger, handler = logging.getLogger("facesdk.training"), _Messages()
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), logger.level)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        trainer = Trainer(config, out)
        trainer.run()
        probe = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            logits = {k: v.clone() for k, v in trainer.model.eval()(probe).items()}
        lrs = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}
        backbone = trainer.model.backbone
        timm_model = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
        recomputed = bool(getattr(timm_model, "grad_checkpointing", False))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[2])
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
    return MethodRun(out, probe, logits, handler.messages, lrs, recomputed)


@pytest.fixture(scope="session")
def smoke_trainer() -> Any:
    """:func:`train_smoke`, for tests that train a variant of one method."""
    return train_smoke


@pytest.fixture(scope="session")
def method_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MethodRun]:
    """Every trainable method trained once (one epoch of the shrunken smoke config), by name."""
    pytest.importorskip("torch", reason="training needs the [train] extra")
    root = tmp_path_factory.mktemp("methods")
    return {name: train_smoke(name, root / name) for name in METHOD_OPTIONS}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``trained_method`` runs once per trainable method."""
    if "trained_method" in metafunc.fixturenames:
        metafunc.parametrize("trained_method", list(METHOD_OPTIONS))


@pytest.fixture(scope="session")
def method_options() -> dict[str, dict]:
    """:data:`METHOD_OPTIONS`: each trainable method's options for the smoke backbone (depth 2)."""
    return METHOD_OPTIONS


@pytest.fixture(scope="session")
def trained_method_names() -> tuple[frozenset[str], frozenset[str]]:
    """The methods ``method_runs`` trains, and the registered ones it leaves out on purpose."""
    return frozenset(METHOD_OPTIONS), frozenset(NOT_TRAINED)
