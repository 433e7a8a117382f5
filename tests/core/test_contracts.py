"""The core contracts: tasks, preprocessing, manifests, errors (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facesdk.contract.checkpoint import (
    CHECKPOINT_MANIFEST,
    MethodSpec,
    load_checkpoint_manifest,
)
from facesdk.contract.export_manifest import (
    ExportManifest,
    load_export_manifest,
    manifest_from_onnx_metadata,
)
from facesdk.errors import (
    ConfigError,
    FaceSdkError,
    IntegrityError,
    ManifestError,
    MissingFileError,
    SchemaVersionError,
)
from facesdk.preprocess import CropPolicy, Preprocess, to_input_tensor
from facesdk.results import FaceResult, FrameResult, Prediction
from facesdk.tasks import AGE, DEFAULT_TASKS, EMOTION, GENDER, MISSING, TaskSpec, age_to_group
from tests.manifests import checkpoint_manifest, export_manifest


def test_standard_tasks_and_label_order() -> None:
    assert AGE.labels == ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
    assert GENDER.labels == ("male", "female")
    assert EMOTION.labels == ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")
    assert [t.name for t in DEFAULT_TASKS] == ["age", "gender", "emotion"]


@pytest.mark.parametrize(
    ("age", "group"), [(0, 0), (2.9, 0), (3, 1), (9, 1), (10, 2), (45, 5), (69, 7), (70, 8), (101, 8)]
)
def test_age_bins(age: float, group: int) -> None:
    assert age_to_group(age) == group
    assert AGE.labels[group]


def test_task_validation_messages() -> None:
    with pytest.raises(ConfigError, match="duplicate labels"):
        TaskSpec("x", ("a", "a"))
    with pytest.raises(ConfigError, match="out of range"):
        GENDER.check_index(2)
    assert GENDER.check_index(MISSING) == MISSING
    with pytest.raises(ConfigError, match="not a label"):
        EMOTION.index("bored")


def test_preprocess_roundtrip_and_fingerprint() -> None:
    spec = Preprocess(
        input_size=(64, 48), mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4), crop=CropPolicy("box", 0.2)
    )
    again = Preprocess.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec and again.fingerprint() == spec.fingerprint()
    assert Preprocess(input_size=(64, 64)).fingerprint() != Preprocess(input_size=(64, 48)).fingerprint()
    with pytest.raises(ConfigError, match="interpolation"):
        Preprocess(interpolation="lanczos9")
    with pytest.raises(ConfigError, match="crop kind"):
        CropPolicy("oval")


def test_to_input_tensor_normalises_rgb_nchw() -> None:
    spec = Preprocess(input_size=(8, 8), mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    crop = np.zeros((8, 8, 3), np.uint8)
    crop[..., 0] = 255  # blue in BGR
    out = to_input_tensor([crop], spec)
    assert out.shape == (1, 3, 8, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], -1.0)  # red channel: (0 - .5)/.5
    np.testing.assert_allclose(out[0, 1], -2.0)  # green: (0 - .5)/.25
    np.testing.assert_allclose(out[0, 2], 1.0)  # blue: (1 - .5)/.5
    resized = to_input_tensor([np.zeros((9, 7, 3), np.uint8)], spec)
    assert resized.shape == (1, 3, 8, 8)
    with pytest.raises(ConfigError, match="uint8 BGR"):
        to_input_tensor([np.zeros((8, 8), np.uint8)], spec)


def test_checkpoint_manifest_roundtrip_and_errors(tmp_path: Path) -> None:
    manifest = checkpoint_manifest(tmp_path, method=MethodSpec("dora", {"rank": 4}))
    manifest.write(tmp_path)
    assert load_checkpoint_manifest(tmp_path) == manifest

    data = json.loads((tmp_path / CHECKPOINT_MANIFEST).read_text())
    data["schema_version"] = 99
    (tmp_path / CHECKPOINT_MANIFEST).write_text(json.dumps(data))
    with pytest.raises(SchemaVersionError, match="version 99.*reads version"):
        load_checkpoint_manifest(tmp_path)

    manifest.write(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"weightz")
    with pytest.raises(IntegrityError, match="sha256"):
        load_checkpoint_manifest(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(MissingFileError, match="model.safetensors"):
        load_checkpoint_manifest(tmp_path)
    with pytest.raises(MissingFileError, match="does not exist"):
        load_checkpoint_manifest(tmp_path / "nowhere")
    (tmp_path / CHECKPOINT_MANIFEST).write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_checkpoint_manifest(tmp_path)


def test_export_manifest_roundtrip_metadata_and_integrity(tmp_path: Path) -> None:
    manifest = export_manifest(tmp_path)
    manifest.write(tmp_path)
    loaded = load_export_manifest(tmp_path)
    assert loaded == manifest
    assert loaded.model("onnx", "fp32").file.path == "model.onnx"
    with pytest.raises(MissingFileError, match="no engine model in fp16"):
        loaded.model("engine", "fp16")

    rebuilt = manifest_from_onnx_metadata(manifest.onnx_metadata(), "model.onnx")
    assert rebuilt.tasks == manifest.tasks and rebuilt.preprocess == manifest.preprocess
    assert rebuilt.batch == (1, 16) and rebuilt.outputs == manifest.outputs
    with pytest.raises(ManifestError, match="no facesdk metadata"):
        manifest_from_onnx_metadata({}, "other.onnx")

    (tmp_path / "model.onnx").write_bytes(b"onnx bytez")
    with pytest.raises(IntegrityError):
        load_export_manifest(tmp_path)
    assert load_export_manifest(tmp_path, verify=False).opset == 18


def test_export_manifest_rejects_inconsistent_fields(tmp_path: Path) -> None:
    manifest = export_manifest(tmp_path)
    with pytest.raises(ManifestError, match="task names"):
        ExportManifest(**{**_fields(manifest), "outputs": manifest.outputs[::-1]})
    with pytest.raises(ConfigError, match="batch range"):
        ExportManifest(**{**_fields(manifest), "batch": (4, 2)})


def _fields(manifest: ExportManifest) -> dict:
    return {name: getattr(manifest, name) for name in manifest.__slots__}


def test_results_are_frozen_and_roundtrip_json() -> None:
    pred = Prediction.from_probs(GENDER.labels, np.array([0.25, 0.75]))
    assert pred.label == "female" and pred.confidence == 0.75
    face = FaceResult(
        box=(1, 2, 3, 4), score=0.9, landmarks=((1, 1),) * 5, attributes={"gender": pred}, track_id=3
    )
    frame = FrameResult(index=7, timestamp=1.5, faces=(face,), timings={"infer": 2.0})
    assert FrameResult.from_json(json.loads(frame.dumps())) == frame
    assert face.gender is pred and face.age is None
    with pytest.raises(AttributeError):
        face.score = 0.1  # type: ignore[misc]


def test_every_error_is_a_facesdk_error() -> None:
    import facesdk.errors as errors

    classes = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]
    assert len(classes) >= 12  # the error family; the module also exports run_guarded and EXIT_USAGE
    for cls in classes:
        assert issubclass(cls, FaceSdkError), cls
    with pytest.raises(errors.DependencyError, match=r"pip install 'facesdk\[train\]'"):
        errors.require("no_such_module_xyz", "train", "training")


def test_expected_age_weights_bin_midpoints_and_caps_the_open_bin():
    from facesdk.results import AGE_BIN_YEARS, Prediction, expected_age
    from facesdk.tasks import AGE

    labels = AGE.labels
    assert tuple(AGE_BIN_YEARS) == labels
    one_hot = Prediction.from_probs(labels, [1.0 if k == "20-29" else 0.0 for k in labels])
    assert expected_age(one_hot) == pytest.approx(24.5)
    half = Prediction.from_probs(labels, [0.5 if k in ("0-2", "70+") else 0.0 for k in labels])
    assert expected_age(half) == pytest.approx((1.0 + 75.0) / 2)
    assert expected_age(Prediction.from_probs(("a", "b"), [0.5, 0.5])) is None
    assert expected_age(None) is None


def test_face_result_stream_fields_round_trip_and_old_json_still_loads():
    from facesdk.results import FaceResult, Quality

    quality = Quality(score=0.5, size=0.9, sharpness=0.4, pose=0.8, detector=0.95)
    face = FaceResult(
        (1, 2, 3, 4), 0.9, (), {}, track_id=3, inferred=False, estimate_age_s=0.25, quality=quality
    )
    again = FaceResult.from_json(face.to_json())
    assert again == face and not again.estimated and again.age_years is None
    old = {
        k: v
        for k, v in face.to_json().items()
        if k not in ("inferred", "estimate_age_s", "quality", "age_years")
    }
    loaded = FaceResult.from_json(old)
    assert loaded.inferred is True and loaded.estimate_age_s == 0.0 and loaded.quality is None
