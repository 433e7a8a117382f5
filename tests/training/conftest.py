"""Fixtures of the training tests: a tiny backbone and a tiny synthetic set."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the training tests need the [train] extra")

from facesdk.contract.checkpoint import BackboneSpec  # noqa: E402

TINY = BackboneSpec(
    "vit_pe_core_tiny_patch16_384",
    "random",
    {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 64, "num_heads": 2},
)


def _tiny_config(train: Path, val: Path, **sections: dict) -> dict:
    """A config mapping for the tiny backbone on the given manifests."""
    config = {
        "seed": 0,
        "model": {"backbone": TINY.name, "weights": "random", "kwargs": dict(TINY.kwargs)},
        "method": {"name": "lora", "rank": 2, "lora_plus_ratio": 4},
        "data": {
            "train": str(train) if isinstance(train, Path) else train,
            "val": str(val),
            "sampler": "balanced",
        },
        "optim": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2},
        "runtime": {"device": "cpu", "save_every": 3, "threads": 1},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A 60-image synthetic set at 32 px."""
    from facesdk.training.synthetic import SynthOptions, generate_synthetic

    return generate_synthetic(
        tmp_path_factory.mktemp("synth"), SynthOptions(count=60, missing=0.3, seed=1, size=32)
    )


@pytest.fixture(scope="session")
def tiny_backbone() -> BackboneSpec:
    """A 32 px, depth-1, width-64 PE-core backbone (random init)."""
    return TINY


@pytest.fixture(scope="session")
def tiny_config():  # noqa: ANN201
    """``tiny_config(train, val, **sections)``: a config mapping for the tiny backbone."""
    return _tiny_config
