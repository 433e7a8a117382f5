"""Audience measurement: visits, attention and privacy-safe aggregates from stream results."""

from __future__ import annotations

from .sinks import Sink

__all__ = ["Sink"]
