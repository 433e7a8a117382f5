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

from facesdk.checkpoint import BackboneSpec, HeadSpec, MethodSpec  # noqa: E402
from facesdk.cli import main as facesdk_main  # noqa: E402
from facesdk.errors import ConfigError  # noqa: E402
from facesdk.tasks import TaskSpec  # noqa: E402
from facesdk.training.checkpoint_io import build_model, save_checkpoint  # noqa: E402
from facesdk.training.explain import ALL_TASKS, explain_model, overlay  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
YUNET = ROOT / ".." / "shared" / "models" / "face_detection_yunet_2026may.onnx"
TASK = TaskSpec("patch", ("blue", "red"))
KEY = (1, 2)  # (row, column) of the cell whose colour decides the label
# RGB: the key cell is red (label "red") or blue ("blue"); every other cell green, yellow or grey.
PALETTE = np.array([[255, 0, 0], [0, 0, 255], [0, 200, 0], [230, 230, 0], [128, 128, 128]], np.float32)
BACKBONES = {
    # a Perception Encoder ViT (attention-pool head), 4 x 4 patches of 8 px
    "pe": (
        BackboneSpec(
            "vit_pe_core_tiny_patch16_384",
            "random",
            {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3},
        ),
        4,
        150,
    ),
    # a plain ViT with a class token (no attention pool): attention rollout
    "vit": (
        BackboneSpec(
            "vit_tiny_patch16_224",
            "random",
            {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3},
        ),
        4,
        150,
    ),
    # a narrow ResNet (stride 32) at 96 px: a 3 x 3 last feature map for Grad-CAM
    "cnn": (
        BackboneSpec(
            "resnet18",
            "random",
            {
                "layers": [1, 1, 1, 1],
                "channels": [16, 32, 64, 128],
                "stem_width": 16,
                "pretrained_cfg_overlay": {"input_size": [3, 96, 96]},
            },
        ),
        3,
        40,
    ),
}


def known_patch_set(count: int, size: int, grid: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of ``grid x grid`` coloured cells whose label is the colour of the cell at :data:`KEY`."""
    rng = np.random.default_rng(seed)
    cell = size // grid
    colours = rng.integers(2, len(PALETTE), (count, grid, grid))
    labels = rng.integers(0, 2, count)
    colours[:, KEY[0], KEY[1]] = 1 - labels  # label 1 ("red") -> palette 0 (red)
    pixels = PALETTE[colours].repeat(cell, 1).repeat(cell, 2) + rng.normal(0, 20, (count, size, size, 3))
    batch = ((pixels / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2).astype(np.float32)
    return torch.from_numpy(batch), torch.from_numpy(labels)


@dataclass(frozen=True)
class Trained:
    model: torch.nn.Module
    grid: int
    size: int
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
    for name, (spec, grid, steps) in BACKBONES.items():
        torch.manual_seed(0)
        model, preprocess, method = build_model(
            spec, (TASK,), {TASK.name: HeadSpec()}, MethodSpec("full", {})
        )
        size = preprocess.input_size[0]
        images, labels = known_patch_set(2048, size, grid, seed=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            pick = torch.randint(0, len(images), (32,))
            loss = torch.nn.functional.cross_entropy(model(images[pick])[TASK.name], labels[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        directory = tmp_path_factory.mktemp("explain") / name / "checkpoint"
        save_checkpoint(
            model,
            directory,
            backbone=spec,
            preprocess=preprocess,
            tasks=(TASK,),
            method=method,
            heads={TASK.name: HeadSpec()},
        )
        out[name] = Trained(model, grid, size, directory)
    return out


@pytest.mark.parametrize(
    ("name", "method", "target"),
    [
        ("pe", "attention pool", ALL_TASKS),
        ("vit", "attention rollout", ALL_TASKS),
        ("cnn", "grad-cam", "patch"),
    ],
)
def test_map_peaks_on_the_patch_that_decides_the_label(
    trained: dict[str, Trained], name: str, method: str, target: str
) -> None:
    run = trained[name]
    images, labels = known_patch_set(64, run.size, run.grid, seed=1)
    with torch.no_grad():
        accuracy = (run.model(images)[TASK.name].argmax(1) == labels).float().mean().item()
    assert accuracy > 0.95, f"the {name} model did not learn the known-patch task ({accuracy:.2f})"
    (explanation,) = explain_model(run.model, images)
    assert (explanation.method, explanation.target) == (method, target)
    maps = explanation.maps
    assert maps.shape == (64, run.grid, run.grid)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    mean = maps.mean(axis=0)
    assert np.unravel_index(int(mean.argmax()), mean.shape) == KEY, mean.round(2)
    peaks = maps.reshape(len(maps), -1).argmax(axis=1)
    assert (peaks == KEY[0] * run.grid + KEY[1]).mean() >= 0.6


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


@pytest.fixture(scope="module")
def yunet() -> Path:
    if not YUNET.is_file():
        pytest.skip(f"YuNet test model not found at {YUNET.resolve()}")
    return YUNET.resolve()


def test_cli_draws_two_checkpoints_side_by_side(
    trained: dict[str, Trained], astronaut_png: Path, yunet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "explained"
    argv = ["explain", str(astronaut_png), "--model", str(trained["pe"].checkpoint)]
    argv += ["--model", str(trained["cnn"].checkpoint), "--out", str(out), "--detector", str(yunet)]
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
    trained: dict[str, Trained], astronaut_png: Path, yunet: Path, tmp_path: Path, where: str
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
        main([str(astronaut_png), "--model", str(checkpoint), "--out", str(out), "--detector", str(yunet)])
    assert sorted(p.name for p in checkpoint.iterdir()) == before
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert astronaut_png.is_file()
