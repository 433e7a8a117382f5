"""Code the stages register with the runtime by name, through package entry points.

The runtime never imports a stage; a stage that adds a runtime piece (the torch backend, the
bench's torch rows) names it in ``pyproject.toml`` under ``[project.entry-points."facesdk.<group>"]``
and the runtime loads it by that name when asked for it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from .errors import DependencyError

__all__ = ["load_plugin", "plugin_names"]


def plugin_names(group: str) -> list[str]:
    """Names registered under entry-point group ``facesdk.<group>``."""
    return sorted(ep.name for ep in entry_points(group=f"facesdk.{group}"))


def load_plugin(group: str, name: str, extra: str) -> Any:
    """Load the object registered as ``name`` in entry-point group ``facesdk.<group>``.

    Args:
        group: ``"backends"`` or ``"bench"``.
        name: The registered name (``"torch"``).
        extra: The pip extra that provides it, for the error message.

    Raises:
        DependencyError: Nothing is registered under that name, or its module cannot be imported.
    """
    found = [ep for ep in entry_points(group=f"facesdk.{group}") if ep.name == name]
    if not found:
        raise DependencyError(
            f"no {group} plugin {name!r} is registered (registered: {plugin_names(group) or 'none'}); "
            f"install it with pip install 'facesdk[{extra}]' (reinstall facesdk if it is installed from a checkout)"
        )
    try:
        return found[0].load()
    except ImportError as exc:
        raise DependencyError(
            f"{group} plugin {name!r} needs the [{extra}] extra ({exc}); pip install 'facesdk[{extra}]'"
        ) from exc
