"""facesdk explain: maps peak on the patch that decides the label; the CLI writes grids and guards its output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="explain needs the [train] extra")

from facesdk.cli import main as facesdk_main  # noqa: E402
from facesdk.contract.checkpoint import HeadSpec  # noqa: E402
from facesdk.errors import ConfigError  # noqa: E402
from facesdk.training.checkpoint_io import save_checkpoint  # noqa: E402
from facesdk.training.explain import ALL_TASKS, explain_model, overlay  # noqa: E402
from facesdk.training.known_patch import (  # noqa: E402
    BACKBONES,
    KEY,
    TASK,
    KnownPatchRun,
    known_patch_set,
    peak_cell,
    to_batch,
    train_known_patch,
)


@dataclass(frozen=True)
class Trained:
    run: KnownPatchRun
    checkpoint: Path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models train ten times faster on one thread than on two busy cores."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Trained]:
    """Each backbone of :data:`BACKBONES` trained on the known-patch task (seconds) and saved."""
    out = {}
    for name, (spec, _, _) in BACKBONES.items():
        run = train_known_patch(name)
        directory = tmp_path_factory.mktemp("explain") / name / "checkpoint"
        save_checkpoint(
            run.model,
            directory,
            backbone=spec,
            preprocess=run.preprocess,
            tasks=(TASK,),
            method=run.method,
            heads={TASK.name: HeadSpec()},
        )
        out[name] = Trained(run, directory)
    return out


@pytest.mark.parametrize(
    ("name", "method", "target", "shape"),
    [
        ("pe", "attention pool", ALL_TASKS, (4, 4)),
        ("vit", "attention rollout", ALL_TASKS, (4, 4)),
        ("cnn", "grad-cam", "patch", (6, 6)),
    ],
)
def test_map_peaks_on_the_patch_that_decides_the_label(
    trained: dict[str, Trained], name: str, method: str, target: str, shape: tuple[int, int]
) -> None:
    run = trained[name].run
    images, labels = known_patch_set(64, run.size, run.grid, seed=1)
    batch = to_batch(images, run.preprocess)
    with torch.no_grad():
        accuracy = (run.model(batch)[TASK.name].argmax(1).numpy() == labels).mean()
    assert accuracy > 0.95, f"the {name} model did not learn the known-patch task ({accuracy:.2f})"
    (explanation,) = explain_model(run.model, batch)
    assert (explanation.method, explanation.target) == (method, target)
    maps = explanation.maps
    assert maps.shape == (64, *shape)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    mean = maps.mean(axis=0)
    assert peak_cell(mean, run.size, run.grid) == KEY, mean.round(2)
    hits = np.mean([peak_cell(m, run.size, run.grid) == KEY for m in maps])
    assert hits >= 0.6, f"{hits:.2f} of the maps peak on the key cell"


def test_overlay_keeps_the_crop_size() -> None:
    crop = np.zeros((40, 30, 3), np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    blended = overlay(crop, heat)
    assert blended.shape == crop.shape and blended.dtype == np.uint8
    assert blended[:5, :5].sum() > blended[-5:, -5:].sum()


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("images") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def test_cli_draws_two_checkpoints_side_by_side(
    trained: dict[str, Trained], astronaut_png: Path, yunet_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "explained"
    argv = ["explain", str(astronaut_png), "--model", str(trained["pe"].checkpoint)]
    argv += ["--model", str(trained["cnn"].checkpoint), "--out", str(out), "--detector", str(yunet_path)]
    assert facesdk_main(argv) == 0
    report = json.loads((out / "explain.json").read_text())
    (image,) = report["images"]
    (face,) = image["faces"]
    assert [m.split(":")[0] for m in face["maps"]] == ["A", "B"]
    methods = [[r["method"] for r in records] for records in face["maps"].values()]
    assert methods == [["attention pool"], ["grad-cam"]]
    grid = cv2.imread(str(out / image["grid"]))
    assert grid is not None and grid.shape[1] == 4 * 160  # crop + map, per checkpoint
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    # a second run needs --force, and replaces only its own folder
    assert facesdk_main(argv) == 2
    assert facesdk_main([*argv, "--force"]) == 0


@pytest.mark.parametrize("where", ["image", "checkpoint", "inside_checkpoint", "foreign"])
def test_cli_refuses_an_output_that_could_eat_an_input(
    trained: dict[str, Trained], astronaut_png: Path, yunet_path: Path, tmp_path: Path, where: str
) -> None:
    from facesdk.training.explain import main

    checkpoint = trained["pe"].checkpoint
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    out = {
        "image": astronaut_png,
        "checkpoint": checkpoint,
        "inside_checkpoint": checkpoint / "maps",
        "foreign": foreign,
    }[where]
    before = sorted(p.name for p in checkpoint.iterdir())
    with pytest.raises(ConfigError, match="--out"):
        main(
            [str(astronaut_png), "--model", str(checkpoint), "--out", str(out), "--detector", str(yunet_path)]
        )
    assert sorted(p.name for p in checkpoint.iterdir()) == before
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert astronaut_png.is_file()


def test_mtlora_gets_one_attention_map_per_task(
    smoke_trainer: object, tmp_path: Path, one_thread: None
) -> None:
    """MTLoRA copies the attention pool into each task's branch: the maps follow the tasks."""
    run = smoke_trainer("mtlora", tmp_path / "mtlora")  # type: ignore[operator]
    from facesdk.training.checkpoint_io import load_checkpoint

    model = load_checkpoint(run.out / "checkpoint")
    explanations = explain_model(model, run.probe)
    assert [(e.method, e.target) for e in explanations] == [
        ("attention pool", task) for task in ("age", "gender", "emotion")
    ]
    assert all(e.maps.shape == (3, 4, 4) for e in explanations)
    assert not np.allclose(explanations[0].maps, explanations[1].maps)  # each branch's own pool


def test_gradcam_works_on_a_frozen_backbone(trained: dict[str, Trained]) -> None:
    """A linear probe's backbone has no trainable weight; Grad-CAM still needs its feature gradients."""
    run = trained["cnn"].run
    batch = to_batch(known_patch_set(8, run.size, run.grid, seed=2)[0], run.preprocess)
    (live,) = explain_model(run.model, batch)
    flags = {name: p.requires_grad for name, p in run.model.named_parameters()}
    try:
        for p in run.model.backbone.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            (frozen,) = explain_model(run.model, batch)
    finally:
        for name, p in run.model.named_parameters():
            p.requires_grad_(flags[name])
    np.testing.assert_allclose(frozen.maps, live.maps, atol=1e-5)
