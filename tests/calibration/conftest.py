"""Fixtures for the calibration tests: a tiny ViT export (64 px, 2 blocks), test images, a calibration set."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.preprocess import Preprocess

SIZE = 64


@pytest.fixture(scope="session")
def spec() -> Preprocess:
    return Preprocess(input_size=(SIZE, SIZE))


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real model family (vit_pe_core_tiny, random init) at 64 px with 2 blocks, exported to ONNX."""
    torch = pytest.importorskip("torch")
    from facesdk.contract.checkpoint import BackboneSpec, HeadSpec, MethodSpec
    from facesdk.export.onnx_export import export_onnx
    from facesdk.tasks import DEFAULT_TASKS
    from facesdk.training import build_model

    torch.manual_seed(0)
    model, _, _ = build_model(
        BackboneSpec("vit_pe_core_tiny_patch16_384", "random", {"img_size": SIZE, "depth": 2}),
        DEFAULT_TASKS,
        {t.name: HeadSpec() for t in DEFAULT_TASKS},
        MethodSpec("linear_probe", {}),
        load_weights=False,
    )
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(model, path, input_size=(SIZE, SIZE), output_names=[t.name for t in DEFAULT_TASKS], opset=18)
    return path


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``faces/astronaut.png`` (one face), ``empty/coffee.png`` (none), ``lfw/*.png`` crops and ``lfw.csv``."""
    data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("images")
    for sub in ("faces", "empty", "lfw"):
        (root / sub).mkdir()
    cv2.imwrite(str(root / "faces" / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "empty" / "coffee.png"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    rng = np.random.default_rng(0)
    with open(root / "lfw.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "age_group", "gender", "emotion", "cropped"])
        for i, face in enumerate(data.lfw_subset()[:80]):
            name = f"lfw/{i:03d}.png"
            cv2.imwrite(str(root / name), (face * 255 + 0.5).astype(np.uint8))
            out.writerow(
                [
                    name,
                    int(rng.integers(9)),
                    int(rng.integers(2)),
                    "" if i % 4 == 0 else int(rng.integers(7)),
                    1,
                ]
            )
    return {
        "root": root,
        "faces": root / "faces",
        "empty": root / "empty",
        "lfw": root / "lfw",
        "csv": root / "lfw.csv",
    }


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory: pytest.TempPathFactory, images: dict[str, Path], spec: Preprocess) -> Path:
    """64 labelled lfw crops (crop policy 'full' path) in shards of 16."""
    from facesdk.calibration.collect import Source, collect

    out = tmp_path_factory.mktemp("calib")
    collect([Source(images["csv"])], out, spec, count=64, shard_size=16, progress=False)
    return out
