"""Calibration set collection: Analyzer parity, no-face counting, resumption, plan checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import facesdk.calibration.collect as collect_mod
import facesdk.engine
from facesdk.calibration.calibset import load_calibration_set
from facesdk.calibration.collect import Source, collect
from facesdk.errors import ManifestError
from facesdk.preprocess import CropPolicy, Preprocess, to_input_tensor
from facesdk.testing import make_tiny_export


@pytest.mark.parametrize("kind", ["align5", "box"])
def test_crops_equal_analyzer_crops(tmp_path, images, yunet_path, monkeypatch, kind):
    export = tmp_path / "export"
    manifest = make_tiny_export(export, size=64, crop=CropPolicy(kind))
    seen: list[np.ndarray] = []
    original = facesdk.engine.infer_crops

    def spy(backend, crops, spec):
        seen.extend(c.copy() for c in crops)
        return original(backend, crops, spec)

    monkeypatch.setattr(facesdk.engine, "infer_crops", spy)
    frame = cv2.imread(str(images["faces"] / "astronaut.png"))
    with facesdk.Analyzer(export, backend="onnxruntime", detector=yunet_path) as analyzer:
        analyzer.analyze_batch([frame])
    assert len(seen) == 1
    calib = collect(
        [Source(images["faces"])],
        tmp_path / "calib",
        manifest.preprocess,
        count=4,
        detector=str(yunet_path),
        progress=False,
    )
    crops, _ = calib.arrays(tmp_path / "calib")
    assert crops.shape == (1, 3, 64, 64)
    assert np.array_equal(crops, to_input_tensor(seen, manifest.preprocess))  # bit for bit


def test_no_face_frames_are_counted(tmp_path, images, yunet_path, spec):
    calib = collect(
        [Source(images["faces"]), Source(images["empty"])],
        tmp_path / "c",
        spec,
        count=8,
        detector=str(yunet_path),
        progress=False,
    )
    assert calib.count == 1 and calib.complete
    assert calib.frames["no_face"] == 1 and calib.frames["read"] == 2
    by_path = {Path(s["path"]).name: s for s in calib.sources}
    assert by_path["empty"]["no_face"] == 1 and by_path["faces"]["crops"] == 1


def test_collection_resumes_after_interrupt(tmp_path, images, spec, monkeypatch):
    sources = [Source(images["lfw"], cropped=True)]
    reference = collect(sources, tmp_path / "ref", spec, count=40, shard_size=8, progress=False)
    calls = {"n": 0}
    real_read = collect_mod._read

    def flaky(item):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return real_read(item)

    monkeypatch.setattr(collect_mod, "_read", flaky)
    with pytest.raises(KeyboardInterrupt):
        collect(sources, tmp_path / "run", spec, count=40, shard_size=8, progress=False)
    partial = load_calibration_set(tmp_path / "run", require_complete=False)
    assert not partial.complete and partial.count == 16
    with pytest.raises(ManifestError, match="incomplete"):
        load_calibration_set(tmp_path / "run")
    calls["n"] = -1000
    done = collect(sources, tmp_path / "run", spec, count=40, shard_size=8, progress=False)
    assert calls["n"] == -1000 + 24  # only the frames after the two complete shards were read again
    assert done.complete and done.count == 40
    assert np.array_equal(done.arrays(tmp_path / "run")[0], reference.arrays(tmp_path / "ref")[0])


def test_other_plan_in_same_dir_is_refused(tmp_path, images, spec):
    sources = [Source(images["lfw"], cropped=True)]
    collect(sources, tmp_path / "c", spec, count=8, progress=False)
    with pytest.raises(ManifestError, match="another --out"):
        collect(sources, tmp_path / "c", spec, count=9, progress=False)


def test_csv_labels_and_class_balance(calib_dir):
    calib = load_calibration_set(calib_dir)
    _, labels = calib.arrays(calib_dir)
    assert labels.shape == (64, 3) and labels.dtype == np.int64
    assert (labels[:, 2] == -1).any() and labels[:, 0].max() <= 8
    assert len(np.unique(labels[:16, 0])) >= 5  # a prefix already spans many classes


def test_corrupt_shard_is_detected(tmp_path, calib_dir):
    copy = tmp_path / "copy"
    shutil.copytree(calib_dir, copy)
    shard = sorted(copy.glob("crops-*.npy"))[0]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        load_calibration_set(copy)


def test_cli_collect(tmp_path, images, spec, capsys):
    from facesdk.cli import main

    pre = tmp_path / "pre.json"
    pre.write_text(__import__("json").dumps(spec.to_json()))
    code = main(
        [
            "calibrate",
            "collect",
            "--crops",
            str(images["lfw"]),
            "--out",
            str(tmp_path / "c"),
            "--count",
            "5",
            "--preprocess",
            str(pre),
        ]
    )
    assert code == 0
    assert "5 crops" in capsys.readouterr().out
    assert load_calibration_set(tmp_path / "c").preprocess == Preprocess.from_json(spec.to_json())
