"""One-command INT8: ``export build --precision int8 --calib-source ...`` and its checks before any work."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.cli import main
from facesdk.contract.export_manifest import load_export_manifest
from facesdk.contract.manifest_io import sha256_file
from facesdk.export import pipeline
from facesdk.faces.model_store import PACKAGED_DETECTOR

YUNET = PACKAGED_DETECTOR


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["export", "build", *args])
    return code, capsys.readouterr().err


@pytest.fixture()
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the export reaches the checkpoint loading or the ONNX export."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the export started work before refusing its arguments")

    monkeypatch.setattr(pipeline, "_onnx_stage", refuse)
    monkeypatch.setattr(pipeline, "load_checkpoint_manifest", refuse)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--int8-option", "acept_drop=true"], "valid keys: method, keep_float"),
        (["--int8-option", "method=kl"], "method must be one of"),
        (["--int8-option", "threshold=2"], "threshold is an agreement rate"),
        ([], "--calib-source PHOTOS_OR_VIDEO"),
        (["--calib-source", "nowhere/"], "--calib-source nowhere does not exist"),
        (["--calib", "x", "--calib-source", "y"], "not both"),
    ],
)
def test_int8_requests_are_refused_before_any_work(
    checkpoints: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_work: None,
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    said: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    if "--calib" not in extra and "--calib-source" not in extra and extra:
        extra = [*extra, "--calib-source", "y"]
    out = tmp_path / "o"
    code, err = _run(
        capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(out), "--precision", "int8", *extra
    )
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize(
    "flag", [["--keep-calib", "k"], ["--calib-source", "."], ["--int8-option", "seed=1"]]
)
def test_int8_settings_without_int8_are_refused(
    checkpoints: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_work: None,
    flag: list[str],
) -> None:
    code, err = _run(capsys, "--ckpt", str(checkpoints["lora"]), "--out", str(tmp_path / "o"), *flag)
    assert code == 2 and "only apply to --precision int8" in err, err


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A photo folder (the astronaut), a short video of her, and a CSV of face crops (lfw)."""
    data = pytest.importorskip("skimage.data", reason="scikit-image provides the photos")
    if not YUNET.is_file():
        pytest.skip(f"YuNet test model not found at {YUNET}")
    root = tmp_path_factory.mktemp("sources")
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    (root / "photos").mkdir()
    cv2.imwrite(str(root / "photos" / "astronaut.png"), photo)
    writer = cv2.VideoWriter(str(root / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 512))
    for i in range(12):
        writer.write(np.roll(photo, 6 * i, axis=1))
    writer.release()
    (root / "lfw").mkdir()
    lines = ["path,age_group,gender,emotion,cropped"]
    for i, face in enumerate(data.lfw_subset()[:24]):
        cv2.imwrite(str(root / "lfw" / f"{i:02d}.png"), (face * 255 + 0.5).astype(np.uint8))
        lines.append(f"lfw/{i:02d}.png,{i % 9},{i % 2},{i % 7},1")
    (root / "lfw.csv").write_text("\n".join(lines) + "\n")
    return {"root": root, "photos": root / "photos", "video": root / "walk.avi", "csv": root / "lfw.csv"}


@pytest.mark.slow
@pytest.mark.parametrize("keep", [False, True])
def test_one_command_int8_collects_with_the_checkpoint_preprocessing(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    sources: dict[str, Path], keep: bool,
) -> None:  # fmt: skip
    out, kept = tmp_path / "export", tmp_path / "calib"
    args = ["--ckpt", str(checkpoints["lora"]), "--out", str(out), "--precision", "fp32,int8", "--onnx-only",
            "--calib-source", str(sources["photos"]), str(sources["video"]), str(sources["csv"]),
            "--detector", str(YUNET), "--calib-count", "32", "--max-batch", "2",
            "--int8-option", "accept_drop=true", *(["--keep-calib", str(kept)] if keep else [])]  # fmt: skip
    code, err = _run(capsys, *args)
    assert code == 0, err
    manifest = load_export_manifest(out, verify=True)
    record = manifest.model("onnx", "int8").extra["calibration_set"]
    assert record["collected"] is True and record["crops"] == 32
    kinds = sorted(s["kind"] for s in record["sources"])
    assert len(kinds) == 3 and record["frames"]["read"] > 0, record
    report = manifest.model("onnx", "int8").extra["calibration"]
    assert report["calibration"]["preprocess_fingerprint"] == manifest.preprocess.fingerprint()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers  # the temporary set is gone
    if keep:
        assert record["kept"] == str(kept) and record["sha256"] == sha256_file(kept / "calib.json")
        assert json.loads((kept / "calib.json").read_text())["complete"] is True
    else:
        assert record["kept"] is None and record["dir"] is None and len(record["sha256"]) == 64
        assert not kept.exists()


def test_an_existing_calib_set_still_works_and_is_recorded(
    checkpoints: dict[str, Path], tmp_path: Path, sources: dict[str, Path]
) -> None:
    from facesdk.calibration.collect import Source, collect
    from facesdk.contract.checkpoint import load_checkpoint_manifest
    from facesdk.export.calib_source import set_record

    preprocess = load_checkpoint_manifest(checkpoints["lora"]).preprocess
    calib = tmp_path / "calib"
    collect([Source(sources["csv"])], calib, preprocess, count=8, shard_size=4, progress=False)
    record = set_record(calib)
    assert record["sha256"] == sha256_file(calib / "calib.json") and record["crops"] == 8
