"""Audience record sinks: the :class:`Sink` protocol and the JSON Lines files sink."""

from __future__ import annotations

from .base import Sink, close_all, publish_all

__all__ = ["Sink", "close_all", "publish_all"]
