"""Prometheus sink: the latest window and content numbers on ``/metrics`` (``prometheus_client``).

Each gauge holds the last closed period's value, labelled by ``kind`` (``window`` or
``content``), ``source`` and ``content`` (empty for windows). A cell that k-anonymity withheld
(``None`` in the record) is absent from the scrape, never a stale or zero value. Per-visit records
are counted and never exported. The live count of people in view is per person by design and
is exported only when the application passes ``live=`` (see docs/audience.md, privacy).

Metrics (prefix ``facesdk_audience_``): ``passers_by``, ``viewers``, ``dwell_seconds{stat}``,
``attention_seconds{stat}``, ``attention_histogram_people{bin}``,
``viewers_by_age_gender{age,gender}``, ``emotion_share{emotion}``, ``emotion_people``,
``period_end_timestamp_seconds``, ``records_total{kind,source}``; with ``live=``: ``in_view`` and
``looking`` per source; with ``mqtt=``: ``mqtt_pending``, ``mqtt_connected``,
``mqtt_delivered_total``, ``mqtt_dropped_total``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from ...errors import ConfigError, require

__all__ = ["PrometheusSink"]

logger = logging.getLogger(__name__)

PREFIX = "facesdk_audience"
_PERIOD_LABELS = ("kind", "source", "content")
_SCALARS = (
    ("passers_by", "People in view at any time in the last closed period."),
    ("viewers", "Passers-by whose attention reached the viewer threshold in the last closed period."),
    ("emotion_people", "People whose looking time has an emotion estimate in the last closed period."),
)
_STATS = (
    ("dwell_s", "dwell_seconds", "Time in view within the last closed period, over passers-by."),
    ("attention_s", "attention_seconds", "Time looking within the last closed period, over viewers."),
)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Collector:
    """Builds every metric family at scrape time from the records the sink holds."""

    def __init__(self, sink: PrometheusSink) -> None:
        self.sink = sink

    def collect(self) -> Iterator[Any]:
        metrics = self.sink._metrics
        periods, counts = self.sink._state()
        scalars = {
            name: metrics.GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=_PERIOD_LABELS)
            for name, doc in _SCALARS
        }
        stats = {
            key: metrics.GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=[*_PERIOD_LABELS, "stat"])
            for key, name, doc in _STATS
        }
        histogram = metrics.GaugeMetricFamily(
            f"{PREFIX}_attention_histogram_people",
            "Passers-by per bin of attention seconds in the last closed period.",
            labels=[*_PERIOD_LABELS, "bin"],
        )
        demographics = metrics.GaugeMetricFamily(
            f"{PREFIX}_viewers_by_age_gender",
            "Viewers per age group and gender in the last closed period.",
            labels=[*_PERIOD_LABELS, "age", "gender"],
        )
        emotions = metrics.GaugeMetricFamily(
            f"{PREFIX}_emotion_share",
            "Share of the looking time with each top emotion in the last closed period.",
            labels=[*_PERIOD_LABELS, "emotion"],
        )
        ends = metrics.GaugeMetricFamily(
            f"{PREFIX}_period_end_timestamp_seconds",
            "End of the last closed period, seconds since the epoch.",
            labels=_PERIOD_LABELS,
        )
        for key, record in periods.items():
            labels = list(key)

            def add(family: Any, value: Any, *extra: str, labels: list[str] = labels) -> None:
                number = _number(value)
                if number is not None:  # None: withheld by k-anonymity, so absent
                    family.add_metric([*labels, *extra], number)

            for name, _ in _SCALARS:
                add(scalars[name], record.get(name))
            for field, _, _ in _STATS:
                for stat, value in (record.get(field) or {}).items():
                    add(stats[field], value, stat)
            for bin_, value in (record.get("attention_histogram") or {}).items():
                add(histogram, value, bin_)
            for age, genders in (record.get("viewers_by_age_gender") or {}).items():
                for gender, value in (genders or {}).items():
                    add(demographics, value, age, gender)
            for emotion, value in (record.get("emotion_shares") or {}).items():
                add(emotions, value, emotion)
            end = record.get("end")
            if isinstance(end, str):
                add(ends, datetime.fromisoformat(end).timestamp())
        yield from (*scalars.values(), *stats.values(), histogram, demographics, emotions, ends)
        records = metrics.CounterMetricFamily(
            f"{PREFIX}_records", "Records published to this sink.", labels=["kind", "source"]
        )
        for (kind, source), count in sorted(counts.items()):
            records.add_metric([kind, source], count)
        yield records
        yield from self._live(metrics)
        yield from self._mqtt(metrics)

    def _live(self, metrics: Any) -> Iterator[Any]:
        if self.sink.live is None:
            return
        snapshot = self.sink.live() or {}
        for name, doc in (("in_view", "People in view now."), ("looking", "People looking now.")):
            family = metrics.GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["source"])
            for source, value in (snapshot.get(name) or {}).items():
                if source != "total" and _number(value) is not None:  # sum() adds the sources up
                    family.add_metric([str(source)], float(value))
            yield family

    def _mqtt(self, metrics: Any) -> Iterator[Any]:
        if self.sink.mqtt is None:
            return
        stats = self.sink.mqtt()
        yield metrics.GaugeMetricFamily(
            f"{PREFIX}_mqtt_pending", "MQTT messages waiting for the broker.", value=stats["pending"]
        )
        yield metrics.GaugeMetricFamily(
            f"{PREFIX}_mqtt_connected", "1 while the MQTT sink is connected.", value=stats["connected"]
        )
        yield metrics.CounterMetricFamily(
            f"{PREFIX}_mqtt_delivered", "MQTT messages the broker acknowledged.", value=stats["delivered"]
        )
        yield metrics.CounterMetricFamily(
            f"{PREFIX}_mqtt_dropped",
            "MQTT messages dropped, oldest first, because the buffer was full.",
            value=stats["dropped"],
        )


class PrometheusSink:
    """Serve audience numbers on ``http://HOST:PORT/metrics`` (``prometheus_client``, the ``[audience]`` extra).

    Args:
        host: Address to bind; loopback unless another is given.
        port: Port to bind (0: any free port; :attr:`port` says which).
        live: Optional thread-safe callable returning a :meth:`facesdk.audience.Audience.snapshot`
            mapping; its ``in_view`` and ``looking`` counts are exported at each scrape. Off by
            default: those counts describe single people.
        mqtt: Optional callable returning an :meth:`MqttSink.stats` mapping, exported at each scrape.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9100,
        *,
        live: Callable[[], Mapping[str, Any] | None] | None = None,
        mqtt: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        if not 0 <= int(port) < 65536:
            raise ConfigError(f"Prometheus port must be in 0..65535, got {port}")
        self._metrics = require("prometheus_client.core", "audience", "the Prometheus sink")
        client = require("prometheus_client", "audience", "the Prometheus sink")
        self.live, self.mqtt = live, mqtt
        self._lock = threading.Lock()
        self._periods: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._closed = False
        self.registry = client.CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._server, self._thread = client.start_http_server(int(port), addr=host, registry=self.registry)
        self.host, self.port = host, int(self._server.server_address[1])
        logger.info("Prometheus metrics on http://%s:%d/metrics", host, self.port)

    @property
    def url(self) -> str:
        """Where the metrics are served."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def publish(self, record: Mapping[str, Any]) -> None:
        """Keep ``record`` as its period's latest numbers (window and content records) and count it."""
        kind, source = str(record.get("kind")), str(record.get("source") or "")
        with self._lock:
            self._counts[(kind, source)] = self._counts.get((kind, source), 0) + 1
            if kind in ("window", "content"):
                self._periods[(kind, source, str(record.get("content") or ""))] = dict(record)

    def close(self) -> None:
        """Stop the HTTP server and free its port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> PrometheusSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _state(self) -> tuple[dict[tuple[str, str, str], dict[str, Any]], dict[tuple[str, str], int]]:
        with self._lock:
            return dict(self._periods), dict(self._counts)
