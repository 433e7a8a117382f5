"""The sink protocol: where the audience layer's records go (files, MQTT, Prometheus, ...).

A sink receives plain JSON-able mappings, one per record, already privacy-filtered by
:func:`facesdk.audience.privacy.suppress` when they are aggregates: a sink never sees a
cell that k-anonymity withholds, and never an image, crop, landmark or embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["Sink", "publish_all", "close_all"]


@runtime_checkable
class Sink(Protocol):
    """Anything that takes audience records.

    ``publish`` is called from the thread that drives :class:`facesdk.audience.Audience`
    (``update``/``close``); a sink that blocks (a network) buffers and returns. ``close`` flushes
    what the sink holds and releases its resources; it is called once, by ``Audience.close``.
    """

    def publish(self, record: Mapping[str, Any]) -> None:
        """Take one record: a mapping with a ``"kind"`` key (``"window"``, ``"content"``, ``"visit"``)."""
        ...

    def close(self) -> None:
        """Flush and release; no ``publish`` follows."""
        ...


def publish_all(sinks: Sequence[Sink], record: Mapping[str, Any]) -> None:
    """Give ``record`` to every sink in order."""
    for sink in sinks:
        sink.publish(record)


def close_all(sinks: Sequence[Sink]) -> None:
    """Close every sink, even when one fails; the first failure is raised after the rest closed."""
    failure: BaseException | None = None
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - close the others first, then raise
            failure = failure or exc
    if failure is not None:
        raise failure
