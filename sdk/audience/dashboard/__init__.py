"""The live audience dashboard: a page served by the package itself (``facesdk audience --serve``)."""

from __future__ import annotations

from .server import Dashboard, Latest, is_loopback

__all__ = ["Dashboard", "Latest", "is_loopback"]
