"""Docs that run: README's chain table and each docs page's first ``facesdk`` example, as written.

Every ``facesdk ...`` command of README.md's chain table (in table order) and the first
``facesdk`` line of each ``docs/*.md`` page's bash blocks runs in one scratch folder that holds
the inputs the docs name: ``photos/`` (scikit-image's astronaut, 1000 variants: the INT8 gate needs at least 378 face crops), ``photo.jpg``,
``video.mp4``, ``configs/`` and the YuNet detector under ``$FACESDK_HOME/models``. Commands that
read a camera, reach a network, need a data set or train a model other than the smoke model
are skipped, each with its reason. Training ``configs/smoke.yaml`` is the one command not
started here: the session's ``smoke_run`` fixture runs that very command once (checked below)
and its output is linked where the doc's ``--out`` says.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesdk.faces.model_store import PACKAGED_DETECTOR

ROOT = Path(__file__).resolve().parents[1]
YUNET = PACKAGED_DETECTOR
SMOKE_CONFIG = "configs/smoke.yaml"

SKIPPED = (
    (r"--source (\d+|rtsp://)", "reads a camera or network stream"),
    (r"^facesdk models fetch", "downloads the face detector (CI has no network)"),
    (r"--pretrained", "downloads pretrained hub weights (CI has no network)"),
    (r"\s/data/", "needs a public data set downloaded under /data"),
    (r"^facesdk train (?!.*--config configs/smoke\.yaml)", "trains a real or second model (too long for CI)"),
)
"""(pattern, reason): commands not run here, each skipped with its reason."""


def readme_chain() -> list[str]:
    """Every ``facesdk`` command of README.md's chain table, in table order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The chain", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and "`" in line]
    return [span for row in rows for span in re.findall(r"`([^`]+)`", row) if span.startswith("facesdk ")]


def first_doc_examples() -> list[tuple[str, str]]:
    """``(page, command)``: the first ``facesdk`` line in each docs page's bash blocks."""
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", page.read_text(), re.S):
            lines = re.sub(r"\\\n\s*", " ", block).splitlines()
            commands = [line.strip() for line in lines if line.strip().startswith("facesdk ")]
            if commands:
                found.append((f"docs/{page.name}", commands[0]))
                break
    return found


def _words(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def _write_inputs(root: Path) -> None:
    """The photos, video, configs and detector the documented commands name."""
    import cv2

    data = pytest.importorskip("skimage.data", reason="scikit-image provides the photos")
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(root / "photo.jpg"), photo)
    (root / "photos").mkdir()
    rng = np.random.default_rng(0)
    for i in range(1000):  # scale, mirror, rotation and exposure variants: one face each
        scale = rng.uniform(0.6, 1.0)
        image = cv2.resize(photo, None, fx=scale, fy=scale)
        image = image[:, ::-1] if i % 2 else image
        h, w = image.shape[:2]
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-12, 12), 1.0)
        image = cv2.warpAffine(image, turn, (w, h), borderMode=cv2.BORDER_REFLECT)
        image = np.clip(image * rng.uniform(0.6, 1.3) + rng.uniform(-20, 20), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "photos" / f"astronaut_{i:03d}.jpg"), image)
    writer = cv2.VideoWriter(str(root / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (512, 512))
    for shift in range(24):  # a slow pan
        writer.write(np.roll(photo, 4 * shift, axis=1))
    writer.release()
    (root / "configs").symlink_to(ROOT / "configs")
    (root / "home" / "models").mkdir(parents=True)
    (root / "home" / "models" / YUNET.name).symlink_to(YUNET)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not YUNET.is_file():
        pytest.skip(f"YuNet test model not found at {YUNET}")
    root = tmp_path_factory.mktemp("docs")
    _write_inputs(root)
    (root / "runs").mkdir()
    return root


@pytest.fixture(scope="module")
def trained_smoke(request: pytest.FixtureRequest) -> Path:
    """The smoke run (``smoke_run``: ``facesdk train --config configs/smoke.yaml``), trained once per session.

    ``FACESDK_DOCS_SMOKE_RUN`` may name an existing run of that config instead (local reruns).
    """
    given = os.environ.get("FACESDK_DOCS_SMOKE_RUN")
    return Path(given) if given else Path(request.getfixturevalue("smoke_run"))


def _smoke_train(words: list[str], scratch: Path, trained: Path) -> None:
    """Check the command is the smoke run's and link that run's output where its ``--out`` says."""
    from facesdk.training.cli import _train_parser

    args = _train_parser("facesdk train").parse_args(words[2:])
    assert (args.config, args.resume, args.nproc) == (Path(SMOKE_CONFIG), False, None), words
    assert not args.overrides, f"the smoke_run fixture trains {SMOKE_CONFIG} without --set"
    assert (scratch / args.config).is_file()
    out = scratch / args.out
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.symlink_to(trained.resolve())
    assert (out / "checkpoint" / "checkpoint.json").is_file()


def _run(command: str, scratch: Path, trained: Path) -> None:
    for pattern, reason in SKIPPED:
        if re.search(pattern, command):
            pytest.skip(f"{reason}: {command}")
    words = _words(command)
    if words[:2] == ["facesdk", "train"]:
        _smoke_train(words, scratch, trained)
        return
    env = {**os.environ, "FACESDK_HOME": str(scratch / "home"), "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-m", "facesdk", *words[1:]],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{done.stderr[-3000:]}"


CHAIN = readme_chain()
DOCS = first_doc_examples()


def test_the_chain_table_lists_the_steps_in_the_order_they_run() -> None:
    verbs = [" ".join(_words(c)[1:3]) for c in CHAIN]
    order = ["train --config", "calibrate collect", "export build", "analyze photo.jpg"]
    assert [v for v in verbs if v in order] == order, verbs


@pytest.mark.slow
@pytest.mark.parametrize("command", CHAIN, ids=[f"README:{' '.join(_words(c)[:2])}" for c in CHAIN])
def test_readme_chain_runs_as_written(command: str, scratch: Path, trained_smoke: Path) -> None:
    _run(command, scratch, trained_smoke)


@pytest.mark.slow
@pytest.mark.parametrize(("page", "command"), DOCS, ids=[page for page, _ in DOCS])
def test_each_page_first_example_runs_as_written(
    page: str, command: str, scratch: Path, trained_smoke: Path
) -> None:
    _run(command, scratch, trained_smoke)
