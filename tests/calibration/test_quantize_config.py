"""QuantizeConfig: the --int8-option keys and values, checked before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesdk.calibration.quantize import quantize_export
from facesdk.calibration.quantize_config import QuantizeConfig
from facesdk.errors import ConfigError
from facesdk.tasks import DEFAULT_TASKS


def test_unknown_key_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown --int8-option key\(s\) acept_drop; valid keys: method, "):
        QuantizeConfig.from_options({"acept_drop": True})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"method": "kl"}, "method must be one of"),
        ({"activations": "int4"}, "activations must be"),
        ({"threshold": 2}, "threshold is an agreement rate"),
        ({"threshold": "high"}, "threshold is an agreement rate"),
        ({"holdout_fraction": 1.0}, "holdout_fraction must be within"),
        ({"accept_drop": "yes"}, "accept_drop must be true or false"),
        ({"also_keep_float": [1, 2]}, "also_keep_float must be a list"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"sensitivity_budget_s": -1}, "sensitivity_budget_s must be >= 0"),
    ],
)
def test_bad_values_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        QuantizeConfig.from_options(options)


def test_values_from_the_command_line_become_typed_settings() -> None:
    cfg = QuantizeConfig.from_options(
        {"method": "auto", "also_keep_float": "*/proj/*", "keep_float": ["*/head/*"], "accept_drop": True}
    )
    assert cfg.also_keep_float == ("*/proj/*",) and cfg.keep_float == ("*/head/*",)
    assert cfg.method == "auto" and cfg.accept_drop is True and cfg.threshold == 0.98
    assert cfg.to_json()["also_keep_float"] == ["*/proj/*"]
    assert QuantizeConfig.from_options(cfg.to_json()) == cfg


def test_quantize_export_checks_its_options_before_reading_anything(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    with pytest.raises(ConfigError, match="valid keys"):
        quantize_export(missing, missing, tmp_path / "x.onnx", None, DEFAULT_TASKS, methd="auto")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not both"):
        quantize_export(missing, missing, tmp_path / "x.onnx", None, DEFAULT_TASKS, QuantizeConfig(), seed=1)  # type: ignore[arg-type]
