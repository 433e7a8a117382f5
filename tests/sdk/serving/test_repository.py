"""Every generated config.pbtxt parses with the model_config schema that tritonclient ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesdk.errors import ConfigError, MissingFileError
from facesdk.serving import BACKBONE, BACKBONE_PYTHON, PIPELINE, RepositoryConfig, write_repository
from facesdk.serving.repository import backbone_config, preferred_batch_sizes
from facesdk.testing import tiny_manifest

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="needs the [serving] extra"
)
text_format = pytest.importorskip("google.protobuf.text_format")


def parse(text: str):  # noqa: ANN201
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_onnxruntime_repository_parses(tmp_path: Path, tiny_export: Path, yunet_path: Path) -> None:
    written = write_repository(
        tiny_export, tmp_path, RepositoryConfig(instances=3, max_queue_delay_us=500), yunet_path
    )
    assert set(written) == {BACKBONE, BACKBONE_PYTHON, PIPELINE}
    configs = {name: parse((path / "config.pbtxt").read_text()) for name, path in written.items()}
    native = configs[BACKBONE]
    assert native.platform == "onnxruntime_onnx" and native.max_batch_size == 8
    assert (written[BACKBONE] / "1" / "model.onnx").is_file()
    assert list(native.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert native.dynamic_batching.max_queue_delay_microseconds == 500
    assert native.instance_group[0].count == 3
    assert [o.name for o in native.output] == ["age", "gender", "emotion"]
    assert list(native.input[0].dims) == [3, 32, 32] and list(native.output[0].dims) == [9]
    labels = (written[BACKBONE] / native.output[0].label_filename).read_text().split()
    assert len(labels) == 9
    assert configs[BACKBONE_PYTHON].backend == "python"
    pipe = configs[PIPELINE]
    assert pipe.max_batch_size == 0 and {i.name for i in pipe.input} == {"IMAGE", "FRAME"}
    assert pipe.parameters["backbone_model"].string_value == BACKBONE
    assert (written[PIPELINE] / "1" / pipe.parameters["detector"].string_value).is_file()


def test_tensorrt_config_parses_and_needs_an_engine(
    tmp_path: Path, tiny_export: Path, yunet_path: Path
) -> None:
    config = parse(
        backbone_config(
            BACKBONE, tiny_manifest(), RepositoryConfig(backend="tensorrt", kind="KIND_GPU"), "tensorrt_plan"
        )
    )
    assert (
        config.platform == "tensorrt_plan"
        and config.instance_group[0].kind == config.instance_group[0].KIND_GPU
    )
    with pytest.raises(MissingFileError, match="no engine model"):
        write_repository(tiny_export, tmp_path, RepositoryConfig(backend="tensorrt"), yunet_path)


def test_python_repository_points_the_pipeline_at_the_python_backbone(
    tmp_path: Path, tiny_export: Path, yunet_path: Path
) -> None:
    written = write_repository(tiny_export, tmp_path, RepositoryConfig(backend="python"), yunet_path)
    assert BACKBONE not in written
    pipe = parse((written[PIPELINE] / "config.pbtxt").read_text())
    assert pipe.parameters["backbone_model"].string_value == BACKBONE_PYTHON


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="--backend"):
        RepositoryConfig(backend="tflite")
    with pytest.raises(ConfigError, match="--instances"):
        RepositoryConfig(instances=0)
    assert preferred_batch_sizes(1) == [1] and preferred_batch_sizes(6) == [2, 4, 6]
