"""The registry of adaptation methods: the :class:`Method` base class and the name -> method table.

Concrete methods subclass :class:`Method` and call :func:`register_method` when their module is
imported (:mod:`facesdk.training.methods` for the built-in ones, :mod:`facesdk.training.mtlora`,
:mod:`facesdk.training.zeroshot.method`); importing :mod:`facesdk.training` imports all of them.
This module imports none of them, so they can all depend on it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from facesdk.errors import ConfigError

__all__ = ["METHODS", "Method", "get_method", "register_method"]


class Method:
    """Base of every adaptation method.

    Subclasses set :attr:`name` and :attr:`mergeable` and override :meth:`normalize`,
    :meth:`apply` and, if they need special optimizer groups, :meth:`param_groups`.
    """

    name = "base"
    mergeable = True

    def normalize(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a user config and return it complete with defaults."""
        if config:
            raise ConfigError(f"method {self.name!r} takes no options, got {sorted(config)}")
        return {}

    def apply(self, model: nn.Module, config: Mapping[str, Any]) -> nn.Module:
        """Set what trains and attach adapters; ``model`` is a MultiTaskModel."""
        raise NotImplementedError

    def optimizer(self, groups: list[dict[str, Any]], config: Mapping[str, Any], **kwargs: Any) -> Any:
        """The optimizer over ``groups`` (AdamW; GaLore overrides this)."""
        import torch

        return torch.optim.AdamW(groups, **kwargs)

    def param_groups(
        self, model: nn.Module, config: Mapping[str, Any], lr: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        """Optimizer groups: decay on matrices, none on vectors (biases, norms, magnitudes)."""
        decay, no_decay = [], []
        for _, param in model.named_parameters():
            if param.requires_grad:
                (decay if param.ndim >= 2 else no_decay).append(param)
        groups = [
            {"name": "decay", "params": decay, "lr": lr, "weight_decay": weight_decay},
            {"name": "no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method to the registry under its name."""
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method called ``name``.

    Raises:
        ConfigError: No method of that name is registered.
    """
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown adaptation method {name!r}; choose one of {sorted(METHODS)}") from None
