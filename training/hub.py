"""Pretrained weights from the Hugging Face Hub: quick when the hub is out of reach, one line when it fails.

timm and open_clip fetch weights through ``huggingface_hub``, which retries an unreachable
hub for about a minute and then raises ``LocalEntryNotFoundError`` (open_clip wraps it in a
``RuntimeError``). :func:`hub_fetch` probes the hub's endpoint first (one TCP connect with a
short timeout); when it cannot be reached the fetch runs in offline mode, so a filled cache
still works and an empty one fails at once. A failure to fetch becomes one
:class:`HubUnavailableError` that says what was fetched, why it failed and the ways out.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

from facesdk.errors import FaceSdkError

__all__ = ["HubUnavailableError", "hub_fetch", "hub_reachable"]

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
_HUB_ERRORS = ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError", "ConnectTimeout")


class HubUnavailableError(FaceSdkError, OSError):
    """Pretrained weights could not be fetched: the hub is unreachable or offline and the cache lacks them."""


def hub_reachable(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``endpoint`` (an http(s) URL) opens within ``timeout`` seconds."""
    parts = urlsplit(endpoint)
    host = parts.hostname
    if not host:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _from_hub(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the hub or its cache failed us."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in _HUB_ERRORS:
            return True
        current = current.__cause__ or current.__context__
    return False


class _QuietDownloadErrors(logging.Filter):
    """Drops open_clip's own "Failed to download" log line: the raised error says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to download")


@contextlib.contextmanager
def hub_fetch(what: str, local_way: str) -> Iterator[None]:
    """Run a hub download quickly and turn its failure into one :class:`HubUnavailableError`.

    Args:
        what: What is fetched, e.g. ``"the pretrained weights of vit_small (weights: hub)"``.
        local_way: How to do without the hub, e.g. ``"set model.weights to file:PATH"``.
    """
    try:
        from huggingface_hub import constants
    except ImportError:  # not installed: nothing to guard
        yield
        return
    endpoint = constants.ENDPOINT
    forced = False
    if not constants.is_offline_mode() and not hub_reachable(endpoint):
        log.warning("the Hugging Face Hub at %s cannot be reached; looking in the local cache only", endpoint)
        constants.HF_HUB_OFFLINE, forced = True, True
    offline = constants.is_offline_mode()
    quiet = _QuietDownloadErrors()
    logging.getLogger().addFilter(quiet)  # open_clip logs the failure on the root logger, then raises
    try:
        yield
    except Exception as exc:
        if not _from_hub(exc):
            raise
        reason = (
            f"the hub at {endpoint} is unreachable"
            if forced
            else "offline mode is on (HF_HUB_OFFLINE)"
            if offline
            else f"the hub at {endpoint} did not answer"
        )
        raise HubUnavailableError(
            f"cannot fetch {what}: {reason} and the local cache ({constants.HF_HUB_CACHE}) holds no copy. "
            f"Ways out: {local_way}; or fill the cache on a machine that reaches the hub and run with "
            "HF_HUB_OFFLINE=1; or make the hub reachable (HF_ENDPOINT names a mirror)"
        ) from exc
    finally:
        logging.getLogger().removeFilter(quiet)
        if forced:
            constants.HF_HUB_OFFLINE = False
