"""Preparation: crops through the SDK crop functions, splits, no-face listing, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk.cli import main as facesdk_main
from facesdk.errors import ConfigError
from facesdk.faces import FaceDetector, crop_face
from facesdk.results import Detection
from facesdk.tasks import MISSING
from facesdk.training.datasets import PrepareOptions, prepare_dataset, read_manifest, stratified_split
from facesdk.training.datasets.prepare import box_iou, choose_face


def test_stratified_split_is_seeded_and_stratified() -> None:
    keys = [("a",)] * 50 + [("b",)] * 10 + [("c",)] * 5
    train, val = stratified_split(keys, 0.2, seed=3)
    assert stratified_split(keys, 0.2, seed=3) == (train, val)
    assert stratified_split(keys, 0.2, seed=4) != (train, val)
    assert sorted(train + val) == list(range(len(keys)))
    assert [sum(keys[i] == k for i in val) for k in (("a",), ("b",), ("c",))] == [10, 2, 1]
    with pytest.raises(ConfigError):
        stratified_split(keys, 1.0)


def test_stratified_split_reaches_rare_strata() -> None:
    keys = [(i,) for i in range(10)] + [("a",)] * 4
    train, val = stratified_split(keys, 0.2, seed=0)
    assert len(val) == 3 and len(train) == 11
    assert stratified_split(keys, 0.2, seed=0) == (train, val)


def test_choose_face() -> None:
    small = Detection((0, 0, 10, 10), 0.9, ())
    big = Detection((50, 50, 30, 30), 0.8, ())
    assert choose_face([small, big], None, 0.3)[0] is big
    assert choose_face([small, big], (1, 1, 10, 10), 0.3)[0] is small
    face, reason = choose_face([small, big], (200, 200, 5, 5), 0.3)
    assert face is None and "IoU" in reason
    assert box_iou((0, 0, 2, 2), (1, 0, 2, 2)) == pytest.approx(1 / 3)
    # A loose box (VggFace2) three times the face's side: IoU 1/9, but the face lies inside it.
    loose = (35, 35, 90, 90)
    assert box_iou(big.box, loose) < 0.3 and choose_face([small, big], loose, 0.3)[0] is big


def test_prepare_with_given_boxes_and_resume(lagenda_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    options = PrepareOptions(crop="box", size=24, margin=0.2, image_format="png")
    result = prepare_dataset("lagenda", lagenda_root, out, options)
    assert result.status == {"ok": 4} and result.issues == 2
    rows = read_manifest(out / "train.csv") + read_manifest(out / "val.csv")
    assert len(rows) == 4 and not (out / "test.csv").exists()
    assert sorted(r.path for r in read_manifest(out / "all.csv")) == sorted(r.path for r in rows)
    by_name = {r.path.name: r for r in rows}
    assert by_name["a_f1.png"].age_group == MISSING and by_name["a_f1.png"].gender == 1
    # The crop is exactly what the SDK's crop_face makes from the given box.
    frame = cv2.imread(str(lagenda_root / "images" / "a.jpg"))
    expected = crop_face(frame, Detection((10.0, 10.0, 30.0, 30.0), 1.0, ()), options.preprocess())
    np.testing.assert_array_equal(cv2.imread(str(out / "crops" / "a_f0.png")), expected)
    info = json.loads((out / "prepare.json").read_text())
    assert info["complete"] and info["dataset"] == "lagenda"
    assert info["preprocess"]["input_size"] == [24, 24] and info["preprocess"]["crop"]["kind"] == "box"
    assert info["detector"] is None and info["splits"]["train"]["rows"] + info["splits"]["val"]["rows"] == 4
    report = json.loads((out / "report.json").read_text())
    assert [i["line"] for i in report["reader"]["issues"]] == [7, 8]
    assert report["reader"]["skipped"] == {"no face box": 1, "face without age or gender": 1}
    # Interrupted run: one crop and the manifests lost; a rerun keeps the rest and redoes that one.
    (out / "crops" / "b_f0.png").unlink()
    (out / "train.csv").unlink()
    again = prepare_dataset("lagenda", lagenda_root, out, options)
    assert again.status == {"cached": 3, "ok": 1}
    assert len(read_manifest(out / "train.csv")) + len(read_manifest(out / "val.csv")) == 4
    with pytest.raises(ConfigError, match="another --out"):
        prepare_dataset("lagenda", lagenda_root, out, PrepareOptions(crop="box", size=32))


def test_prepare_detects_aligns_and_lists_no_face(
    astronaut_fairface: Path, yunet_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prepared"
    argv = ["prepare", "fairface", "--root", str(astronaut_fairface), "--out", str(out), "--workers", "0"]
    argv += ["--size", "64", "--detector", str(yunet_path), "--format", "png"]
    assert facesdk_main(["data", *argv]) == 0  # through the console script's dispatcher
    no_face = (out / "no_face.txt").read_text().splitlines()
    assert len(no_face) == 1 and no_face[0].startswith(str(astronaut_fairface.resolve() / "train" / "2.jpg"))
    assert "no face detected" in no_face[0]
    test_rows = read_manifest(out / "test.csv")
    assert [r.path.name for r in test_rows] == ["1.png"] and test_rows[0].gender == 1
    train_rows = read_manifest(out / "train.csv") + read_manifest(out / "val.csv")
    assert [r.path.relative_to(out).as_posix() for r in train_rows] == ["crops/train/1.png"]
    # Same pixels as the SDK's own detector + crop_face on that image (train/serve parity).
    image = cv2.imread(str(astronaut_fairface / "train" / "1.jpg"))
    detection = FaceDetector(yunet_path).detect(image)[0]
    info = json.loads((out / "prepare.json").read_text())
    from facesdk.preprocess import Preprocess

    expected = crop_face(image, detection, Preprocess.from_json(info["preprocess"]))
    np.testing.assert_array_equal(cv2.imread(str(out / "crops" / "train" / "1.png")), expected)
    assert info["no_face"] == 1 and info["preprocess"]["crop"]["kind"] == "align5"


@pytest.mark.slow
def test_prepare_in_worker_processes(lagenda_root: Path, tmp_path: Path) -> None:
    serial = prepare_dataset("lagenda", lagenda_root, tmp_path / "a", PrepareOptions(crop="box", size=16))
    pooled = prepare_dataset(
        "lagenda", lagenda_root, tmp_path / "b", PrepareOptions(crop="box", size=16, workers=2)
    )
    assert serial.status == pooled.status == {"ok": 4}
    for name in ("train.csv", "val.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_align5_uses_the_detection_that_matches_the_given_box(
    astronaut_lagenda: Path, yunet_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    options = PrepareOptions(crop="align5", size=32, detector=str(yunet_path), image_format="png")
    result = prepare_dataset("lagenda", astronaut_lagenda, out, options)
    assert result.status == {"ok": 1, "no_face": 1}
    (line,) = (out / "no_face.txt").read_text().splitlines()
    assert "astro.jpg" in line and "IoU" in line
    assert (out / "crops" / "astro_f0.png").is_file() and not (out / "crops" / "astro_f1.png").exists()
