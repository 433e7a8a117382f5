"""The one end-to-end run: configs/smoke.yaml reaches 0.90 validation accuracy on every task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_smoke_run_reaches_090_on_every_task(smoke_run: Path) -> None:
    manifest = json.loads((smoke_run / "checkpoint" / "checkpoint.json").read_text())
    best = manifest["training"]["best"]
    assert set(best) == {"age", "gender", "emotion"}
    for task, metrics in best.items():
        assert metrics["acc"] >= 0.90, (task, metrics)
    for name in ("log.csv", "curves.png", "config.yaml", "state/state.json", "data/train.csv"):
        assert (smoke_run / name).is_file(), name
