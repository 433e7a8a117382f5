"""``facesdk train`` never eats its inputs, and a damaged state on --resume is one line (exit 2)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from facesdk.cli import main


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _one_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture()
def run_inputs(tmp_path: Path, tiny_synth, tiny_config) -> tuple[Path, Path]:  # noqa: ANN001
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_synth.train, tiny_synth.val, optim={"epochs": 1})))
    return config, Path(tiny_synth.train).parent


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("config folder", "contains the input"),
        ("data folder", "contains the input"),
        ("foreign folder", "did not write"),
    ],
)
def test_train_out_may_not_eat_inputs(
    run_inputs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
    message: str,
) -> None:
    config, data = run_inputs
    if where == "foreign folder":
        out = tmp_path / "documents"
        out.mkdir()
        (out / "thesis.txt").write_text("mine")
    else:
        out = config.parent if where == "config folder" else data
    before = {**_hashes(config.parent), **{f"data/{k}": v for k, v in _hashes(data).items()}}
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert message in _one_error(capsys.readouterr().err)
    assert {**_hashes(config.parent), **{f"data/{k}": v for k, v in _hashes(data).items()}} == before


def test_resume_with_truncated_state_is_one_line(
    run_inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = run_inputs
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    _truncate(out / "state" / "state.json")
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--out", str(out), "--resume"]) == 2
    line = _one_error(capsys.readouterr().err)
    assert "training state" in line and "is damaged" in line and "--resume" in line, line
