"""The Prometheus sink, scraped over HTTP and parsed as exposition text."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

pytest.importorskip(
    "prometheus_client", reason="the Prometheus sink needs prometheus_client ([audience] extra)"
)

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from facesdk.audience import suppress  # noqa: E402
from facesdk.audience.records import Aggregate  # noqa: E402
from facesdk.audience.sinks.prometheus import PrometheusSink  # noqa: E402

T0 = 1_796_000_000.0


def window(start: float, passers_by: int, viewers: int, source: str = "cam0") -> dict[str, Any]:
    """A window record as the audience layer publishes it (k = 3 applied)."""
    aggregate = Aggregate(
        kind="window",
        source=source,
        start=start,
        end=start + 60,
        content=None,
        partial=False,
        passers_by=passers_by,
        viewers=viewers,
        dwell_mean_s=4.0,
        dwell_median_s=3.5,
        attention_mean_s=2.5,
        attention_median_s=2.0,
        attention_histogram={"0": passers_by - viewers, "2-5": viewers},
        viewers_by_age_gender={"adult": {"female": viewers, "male": 0}},
        emotion_shares={"happy": 0.75, "neutral": 0.25},
        emotion_people=viewers,
    )
    return suppress(aggregate.to_json(), k=3)


def scrape(sink: PrometheusSink) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of one scrape of ``sink.url``."""
    with urllib.request.urlopen(sink.url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def cell(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    base = {"kind": "window", "source": "cam0", "content": ""}
    return f"facesdk_audience_{name}", tuple(sorted({**base, **labels}.items()))


def test_window_numbers_are_scraped_and_withheld_cells_are_absent() -> None:
    with PrometheusSink(port=0) as sink:
        assert sink.url.startswith("http://127.0.0.1:")  # loopback unless told otherwise
        sink.publish(window(T0, passers_by=5, viewers=2))  # two viewers: below k, withheld
        first = scrape(sink)
        assert first[cell("passers_by")] == 5
        assert first[cell("dwell_seconds", stat="median")] == 3.5
        assert first[cell("attention_histogram_people", bin="0")] == 3
        assert first[cell("period_end_timestamp_seconds")] == T0 + 60
        for withheld in (
            cell("viewers"),
            cell("attention_seconds", stat="mean"),
            cell("attention_histogram_people", bin="2-5"),
            cell("viewers_by_age_gender", age="adult", gender="female"),
            cell("emotion_share", emotion="happy"),
        ):
            assert withheld not in first, withheld
        assert first[cell("viewers_by_age_gender", age="adult", gender="male")] == 0  # empty cells stay

        sink.publish(window(T0 + 60, passers_by=2, viewers=0))  # the next window: two people in all
        sink.publish({"kind": "visit", "source": "cam0", "dwell_s": 12.0})  # per person: counted only
        second = scrape(sink)
        assert cell("passers_by") not in second  # withheld now: not the previous window's 5
        assert second[cell("period_end_timestamp_seconds")] == T0 + 120
        assert second[("facesdk_audience_records_total", (("kind", "window"), ("source", "cam0")))] == 2
        assert second[("facesdk_audience_records_total", (("kind", "visit"), ("source", "cam0")))] == 1
        assert not any(
            dict(labels).get("kind") == "visit" for name, labels in second if "records" not in name
        )
        assert not any("in_view" in name or "mqtt" in name for name, _ in second)  # not asked for


def test_live_counts_and_mqtt_buffer_are_exported_only_when_given() -> None:
    live = {"in_view": {"cam0": 2, "total": 2}, "looking": {"cam0": 1, "total": 1}}
    mqtt = {"pending": 4, "delivered": 10, "dropped": 3, "connected": 0}
    with PrometheusSink(port=0, live=lambda: live, mqtt=lambda: mqtt) as sink:
        samples = scrape(sink)
        live["in_view"] = {"cam0": 3, "total": 3}
        again = scrape(sink)
    assert samples[("facesdk_audience_in_view", (("source", "cam0"),))] == 2
    assert samples[("facesdk_audience_looking", (("source", "cam0"),))] == 1
    assert ("facesdk_audience_in_view", (("source", "total"),)) not in samples  # sum() adds sources up
    assert again[("facesdk_audience_in_view", (("source", "cam0"),))] == 3  # read at each scrape
    assert samples[("facesdk_audience_mqtt_dropped_total", ())] == 3
    assert samples[("facesdk_audience_mqtt_pending", ())] == 4


def test_close_frees_the_port() -> None:
    sink = PrometheusSink(port=0)
    url = sink.url
    sink.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5)
