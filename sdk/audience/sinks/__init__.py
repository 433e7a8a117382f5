"""Audience record sinks: the :class:`Sink` protocol and the JSON Lines files sink."""

from __future__ import annotations

from .base import Sink, close_all, publish_all
from .jsonl import JsonLinesSink

__all__ = ["JsonLinesSink", "Sink", "close_all", "publish_all"]
