"""The INT8 quantizer's settings as one typed, checked value (``--int8-option KEY=VALUE``).

``facesdk export build`` builds a :class:`QuantizeConfig` from its ``--int8-option`` pairs in
preflight, before any work starts: an unknown key or a bad value is refused there with the
valid keys named, not after the ONNX export ran. ``facesdk calibrate quantize`` and
:func:`facesdk.calibration.quantize.quantize_export` take the same config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from facesdk.errors import ConfigError

__all__ = ["AUTO", "DEFAULT_QUANTIZE_OPS", "METHODS", "QuantizeConfig"]

METHODS = ("entropy", "percentile", "minmax")
AUTO = "auto"
"""``method="auto"``: calibrate with every one of :data:`METHODS` and keep the best on the held-out
crops (the lowest per-task agreement, then the smaller logit error). Three calibration passes."""
DEFAULT_QUANTIZE_OPS = ("MatMul", "Conv")
ACTIVATIONS = ("int8", "uint8")


def _patterns(value: Any, key: str) -> tuple[str, ...]:
    """A pattern list from JSON (a list) or a single pattern (a string)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{key} must be a list of node-name/op-type patterns, got {value!r}")


@dataclass(frozen=True, slots=True)
class QuantizeConfig:
    """How ``model.onnx`` is quantized and checked.

    Attributes:
        method: Activation range calibration: ``entropy``, ``percentile`` (99.99), ``minmax``,
            or ``auto`` (all three; the best on the held-out crops is kept).
        keep_float: Node-name / op-type patterns kept float; ``None`` = the defaults
            (``facesdk.calibration.quantize.default_keep_float``).
        also_keep_float: Patterns kept float besides ``keep_float`` (what the gate suggests).
        threshold: Minimum Wilson 95% lower bound of the FP32/INT8 top-1 agreement on every
            task. A bound needs enough held-out crops: 189 all agreeing reach 0.98, and a set
            that cannot reach the threshold even then is refused before quantizing.
        accept_drop: Write the model and return the report even below ``threshold``.
        holdout_fraction: Share of the calibration set held out for the check, in (0, 1); half by
            default, so the 1024 crops ``facesdk calibrate collect`` takes by default hold out 512.
        op_types: Op types quantized where no pattern keeps them float.
        activations: ``int8`` (symmetric; the TensorRT form) or ``uint8`` (ONNX Runtime CPU only).
        reduce_range: Quantize weights to 7 bits (ONNX Runtime's ``reduce_range``). On x86 CPUs
            without VNNI, ONNX Runtime's 8-bit integer products can saturate; 7-bit weights cannot,
            and run the same everywhere. Measured on an AMD EPYC with AVX2 only (docs/int8.md): the
            smoke model's INT8 agreement went from 0.980 (emotion, refused by the gate) to 1.000.
            ``False`` keeps 8-bit weights for a model that only VNNI CPUs or GPUs will run.
        sensitivity_budget_s: Time limit of the per-group sensitivity pass run on failure.
        seed: Seed of the hold-out split.
    """

    method: str = "entropy"
    keep_float: tuple[str, ...] | None = None
    also_keep_float: tuple[str, ...] = ()
    threshold: float = 0.98
    accept_drop: bool = False
    holdout_fraction: float = 0.5
    op_types: tuple[str, ...] = DEFAULT_QUANTIZE_OPS
    activations: str = "int8"
    reduce_range: bool = True
    sensitivity_budget_s: float = 120.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.keep_float is not None:
            object.__setattr__(self, "keep_float", _patterns(self.keep_float, "keep_float"))
        object.__setattr__(self, "also_keep_float", _patterns(self.also_keep_float, "also_keep_float"))
        object.__setattr__(self, "op_types", _patterns(self.op_types, "op_types"))
        if self.method not in (*METHODS, AUTO):
            raise ConfigError(f"method must be one of {(*METHODS, AUTO)}, got {self.method!r}")
        if self.activations not in ACTIVATIONS:
            raise ConfigError(
                f"activations must be 'int8' (TensorRT) or 'uint8' (CPU only), got {self.activations!r}"
            )
        if (
            not isinstance(self.threshold, (int, float)) or not 0.0 <= self.threshold < 1.0
        ):  # 1.01: never passes
            raise ConfigError(f"threshold is an agreement rate in [0, 1), got {self.threshold!r}")
        if not isinstance(self.holdout_fraction, (int, float)) or not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be within (0, 1), got {self.holdout_fraction!r}")
        if not isinstance(self.accept_drop, bool):
            raise ConfigError(f"accept_drop must be true or false, got {self.accept_drop!r}")
        if not isinstance(self.reduce_range, bool):
            raise ConfigError(f"reduce_range must be true or false, got {self.reduce_range!r}")
        if not isinstance(self.sensitivity_budget_s, (int, float)) or self.sensitivity_budget_s < 0:
            raise ConfigError(f"sensitivity_budget_s must be >= 0 seconds, got {self.sensitivity_budget_s!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The valid option names."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> QuantizeConfig:
        """Build from ``KEY=VALUE`` options (values already parsed as JSON where they parse).

        Raises:
            ConfigError: An unknown key (the message lists the valid ones) or a bad value.
        """
        unknown = sorted(set(options) - set(cls.keys()))
        if unknown:
            raise ConfigError(
                f"unknown --int8-option key(s) {', '.join(unknown)}; valid keys: {', '.join(cls.keys())}"
            )
        return cls(**dict(options))

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON types (recorded in ``export.json``)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
