"""``facesdk calibrate`` never eats its inputs, and refuses empty sources and sets in one line (exit 2)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from facesdk.calibration.calibset import CalibrationSet
from facesdk.calibration.collect import Source, collect
from facesdk.cli import main
from facesdk.contract.export_manifest import load_export_manifest
from facesdk.testing import make_tiny_export
from tests.helpers import one_error


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def work(tmp_path: Path, calib_dir: Path) -> Path:
    """``work/export`` (a tiny export: model.onnx + export.json) and ``work/calib`` (a 64-crop set)."""
    root = tmp_path / "work"
    make_tiny_export(root / "export", size=64)
    shutil.copytree(calib_dir, root / "calib")
    (root / "notes.onnx").write_bytes(b"the user's own file")
    return root


@pytest.mark.parametrize(
    ("out", "extra", "message"),
    [
        ("export/model.onnx", [], "belongs to the facesdk export"),  # the data-loss case
        ("export/model.onnx", ["--force"], "belongs to the facesdk export"),
        ("export/export.json", ["--force"], "belongs to the facesdk export"),
        ("calib", ["--force"], "is an input"),
        ("calib/crops-00000.npy", ["--force"], "belongs to the facesdk export or set"),
        ("notes.onnx", [], "already exists; pass --force"),
        ("export", ["--force"], "is an input"),
    ],
)
def test_quantize_refuses_to_replace_inputs(
    work: Path, capsys: pytest.CaptureFixture[str], out: str, extra: list[str], message: str
) -> None:
    before = _hashes(work)
    argv = ["calibrate", "quantize", "--model", str(work / "export"), "--calib", str(work / "calib")]
    code = main([*argv, "--out", str(work / out), *extra])
    line = one_error(capsys)
    assert code == 2 and message in line, line
    assert _hashes(work) == before
    load_export_manifest(work / "export")  # the export still loads


def test_quantize_report_may_not_replace_the_manifest(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _hashes(work)
    argv = ["calibrate", "quantize", "--model", str(work / "export"), "--calib", str(work / "calib")]
    argv += ["--out", str(work / "int8.onnx"), "--report", str(work / "export" / "export.json"), "--force"]
    assert main(argv) == 2
    assert "belongs to the facesdk export" in one_error(capsys)
    assert _hashes(work) == before


@pytest.mark.parametrize("crops", [0, 1])
def test_quantize_refuses_a_set_too_small(
    work: Path, images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], crops: int
) -> None:
    manifest = load_export_manifest(work / "export")
    small = tmp_path / "small"
    if crops:
        collect([Source(images["csv"])], small, manifest.preprocess, count=crops, progress=False)
    else:  # what 'collect' wrote before it refused empty sources
        CalibrationSet(manifest.preprocess, ("age", "gender", "emotion"), (), (), 8, "empty", True).write(
            small
        )
    argv = ["calibrate", "quantize", "--model", str(work / "export"), "--calib", str(small)]
    assert main([*argv, "--out", str(tmp_path / "int8.onnx")]) == 2
    line = one_error(capsys)
    assert f"holds {crops} crop(s)" in line and "at least 2" in line, line
    assert not (tmp_path / "int8.onnx").exists()


def test_collect_refuses_unreadable_images_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], yunet_path: Path
) -> None:
    src = tmp_path / "broken"
    src.mkdir()
    for i in range(3):
        (src / f"{i}.jpg").write_bytes(b"not a jpeg " * 10)
    out = tmp_path / "calib"
    argv = ["calibrate", "collect", "--source", str(src), "--out", str(out), "--count", "8"]
    code = main([*argv, "--preprocess", str(_spec_file(tmp_path)), "--detector", str(yunet_path)])
    line = one_error(capsys)
    assert code == 2 and "no face crop could be collected" in line and "3 unreadable" in line, line
    assert not out.exists()


def test_collect_refuses_an_empty_source_and_leaves_no_out(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    (tmp_path / "empty").mkdir()
    out = tmp_path / "calib"
    argv = ["calibrate", "collect", "--crops", str(tmp_path / "empty"), "--out", str(out)]
    assert main([*argv, "--preprocess", str(_spec_file(tmp_path))]) == 2
    assert "holds no images" in one_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    ("where", "message"), [("inside", "sits inside the input"), ("foreign", "did not write")]
)
def test_collect_out_rules(
    images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, message: str
) -> None:
    src = tmp_path / "lfw"
    shutil.copytree(images["lfw"], src)
    out = src / "calib" if where == "inside" else tmp_path / "mine"
    if where == "foreign":
        out.mkdir()
        (out / "diary.txt").write_text("mine")
    before = _hashes(tmp_path)
    argv = ["calibrate", "collect", "--crops", str(src), "--out", str(out), "--count", "4"]
    assert main([*argv, "--preprocess", str(_spec_file(tmp_path / "spec"))]) == 2
    assert message in one_error(capsys)
    assert _hashes(tmp_path) == {**before, **_hashes_of_spec(tmp_path)}


def _spec_file(folder: Path) -> Path:
    import json

    from facesdk.preprocess import Preprocess

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "preprocess.json"
    path.write_text(json.dumps(Preprocess(input_size=(64, 64)).to_json()))
    return path


def _hashes_of_spec(tmp_path: Path) -> dict[str, str]:
    spec = tmp_path / "spec" / "preprocess.json"
    return {spec.relative_to(tmp_path).as_posix(): hashlib.sha256(spec.read_bytes()).hexdigest()}
