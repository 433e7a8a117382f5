"""Bad configs fail before any work with a message that says what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from facesdk.errors import ConfigError
from facesdk.training.config import config_from_mapping, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"model": {"backbone": "vit_nonexistent_tiny"}}, "is not a timm model"),
        ({"method": {"name": "lorax"}}, "unknown adaptation method 'lorax'"),
        ({"method": {"name": "lora", "rank": 0}}, "rank must be > 0"),
        ({"method": {"name": "dora", "rnak": 4}}, "unknown adapter option"),
        ({"optim": {"learning_rate": 1.0}}, r"optim\.learning_rate"),
        ({"data": {"val": "/nonexistent/val.csv"}}, "does not exist"),
        ({"runtime": {"precision": "fp8"}}, "fp32 or bf16"),
        ({"colour": 1}, "config.colour"),
        ({"model": {"heads_init": "text"}}, r"model.heads_init must be one of \('random', 'zeroshot'\)"),
        ({"model": {"heads_init": "zeroshot"}}, "needs model.zeroshot_checkpoint: DIR"),
        ({"model": {"zeroshot_checkpoint": "zs"}}, "set model.heads_init: zeroshot or remove them"),
        ({"model": {"heads_init": "zeroshot", "zeroshot_checkpoint": "/no/zs"}}, "facesdk zeroshot build"),
        ({"model": {"heads_init": "zeroshot", "zeroshot_feature_norm": 0}}, "auto or a number > 0"),
    ],
)
def test_bad_config_messages(tiny_synth, tiny_config, change: dict, needle: str) -> None:  # noqa: ANN001
    config = tiny_config(tiny_synth.train, tiny_synth.val)
    for key, value in change.items():
        config[key] = {**config[key], **value} if key in config and key != "method" else value
    with pytest.raises(ConfigError, match=needle):
        config_from_mapping(config)


def test_out_of_range_label_fails_before_training(tiny_synth, tiny_config, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.csv"
    bad.write_text("path,age_group,gender,emotion\nimages/000000.png,3,1,7\n")
    from facesdk.training.trainer import read_split_rows

    config = config_from_mapping(tiny_config(bad, tiny_synth.val))
    with pytest.raises(ConfigError, match=r"bad.csv:2: bad emotion '7'"):
        read_split_rows(config, tmp_path)


def test_overrides_and_shipped_configs(tmp_path: Path, tiny_synth, tiny_config) -> None:  # noqa: ANN001
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_synth.train, tiny_synth.val)))
    config = load_config(path, ["optim.lr=3e-4", "method.rank=6", "data.hflip=false"])
    assert config.optim.lr == 3e-4 and config.method.config["rank"] == 6 and config.data.hflip is False
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["optim.lr"])
    smoke = load_config(ROOT / "configs/smoke.yaml")
    assert smoke.data.synthetic is not None
    for name in ("pe_core_t16_dora.yaml", "thesis_pe_core_l14_dora.yaml"):
        data = yaml.safe_load((ROOT / "configs" / name).read_text())
        data["data"] = {"synthetic": {"count": 20}}
        cfg = config_from_mapping(data)
        assert cfg.method.name == "dora" and cfg.method.config["lora_plus_ratio"] == 6


def test_checkpoint_crop_policy_follows_prepare_json(tiny_synth, tiny_config, tmp_path: Path) -> None:  # noqa: ANN001
    import json
    import shutil

    from facesdk.training.trainer import crop_policy_of

    config = config_from_mapping(tiny_config(tiny_synth.train, tiny_synth.val))
    assert crop_policy_of(config).kind == "full"
    prepared = tmp_path / "prep"
    prepared.mkdir()
    shutil.copy(tiny_synth.train, prepared / "train.csv")
    crop = {"kind": "align5", "margin": 0.3}
    (prepared / "prepare.json").write_text(json.dumps({"preprocess": {"crop": crop}}))
    config = config_from_mapping(tiny_config(prepared / "train.csv", tiny_synth.val))
    assert crop_policy_of(config).to_json() == crop


def test_dataset_weights_need_the_balanced_sampler(tiny_synth, tiny_config) -> None:  # noqa: ANN001
    from facesdk.training.data import read_manifest
    from facesdk.training.trainer import source_weights

    mix = [
        {"manifest": str(tiny_synth.train), "weight": 2.0},
        {"manifest": str(tiny_synth.val), "weight": 1.0},
    ]
    config = config_from_mapping(tiny_config(mix, tiny_synth.val))
    weights = source_weights(config)
    n_train = len(read_manifest(tiny_synth.train))
    assert weights is not None and weights[:n_train].sum() / weights.sum() == pytest.approx(2 / 3)
    uniform = config_from_mapping(tiny_config(mix, tiny_synth.val, data={"sampler": "uniform"}))
    with pytest.raises(ConfigError, match="only the balanced sampler"):
        source_weights(uniform)


def test_synthetic_runs_record_the_default_alignment() -> None:
    from facesdk.preprocess import CropPolicy
    from facesdk.training.trainer import crop_policy_of

    data = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    assert crop_policy_of(config_from_mapping(data)) == CropPolicy()
