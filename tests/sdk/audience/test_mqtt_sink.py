"""The MQTT sink against a real Mosquitto broker that is stopped and restarted mid-test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from facesdk.errors import ConfigError

pytest.importorskip(
    "paho.mqtt.client", reason="the MQTT sink needs paho-mqtt (pip install 'facesdk[audience]')"
)

from facesdk.audience.sinks.mqtt import MqttSink, parse_host_port  # noqa: E402
from tests.sdk.audience.conftest import Subscriber  # noqa: E402


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting ({timeout:.0f} s) for: {what}"
        time.sleep(0.05)


def record(seq: int) -> dict[str, Any]:
    return {"kind": "window", "start": f"t{seq}", "end": f"t{seq + 1}", "source": "cam0", "seq": seq}


def test_broker_restart_loses_nothing_within_the_bound_and_counts_what_it_drops(broker: Any) -> None:
    bound = 40
    subscriber = Subscriber(broker.port)
    wait_until(subscriber.client.is_connected, "the subscriber to connect")
    sink = MqttSink("127.0.0.1", broker.port, buffer=bound, retry_s=0.2)
    try:
        wait_until(lambda: sink.connected, "the sink to connect")
        # 1. the broker stops while messages are in flight: every one of them arrives after the restart
        for seq in range(30):
            sink.publish(record(seq))
        broker.stop()
        broker.start()
        assert sink.flush(timeout=60), sink.stats()
        # 2. the broker is down while more than the bound is published: the oldest are dropped
        broker.stop()
        for seq in range(100, 100 + bound + 7):
            sink.publish(record(seq))
        assert sink.stats()["dropped"] == 7 and sink.pending == bound, sink.stats()
        broker.start()
        assert sink.flush(timeout=60), sink.stats()

        expected = [*range(30), *range(107, 100 + bound + 7)]
        wait_until(lambda: {m["seq"] for m in subscriber.received()} >= set(expected), "every message", 20)
    finally:
        sink.close(timeout=5)
        subscriber.close()
    unique: dict[str, dict[str, Any]] = {}
    for message in subscriber.received():  # QoS 1 redelivers: the subscriber keeps the first of each id
        assert unique.setdefault(message["message_id"], message) == message
    assert sorted(m["seq"] for m in unique.values()) == expected  # exactly once each, none of the dropped
    assert {m["topic"] for m in unique.values()} == {"facesdk/audience/window"}
    assert sink.dropped == 7 and sink.delivered >= len(expected)


def test_close_waits_for_the_broker_to_take_what_is_buffered(broker: Any) -> None:
    subscriber = Subscriber(broker.port)
    wait_until(subscriber.client.is_connected, "the subscriber to connect")
    sink = MqttSink("127.0.0.1", broker.port, retry_s=0.1)
    wait_until(lambda: sink.connected, "the sink to connect")
    broker.stop()
    for seq in range(5):
        sink.publish(record(seq))
    restart = threading.Timer(0.5, broker.start)
    restart.start()
    sink.close(timeout=60)  # returns once the restarted broker acknowledged all five
    restart.join()
    assert sink.pending == 0 and sink.delivered == 5, sink.stats()
    wait_until(lambda: {m["seq"] for m in subscriber.received()} == set(range(5)), "the five messages", 20)
    subscriber.close()


def test_messages_after_close_are_refused_and_records_are_checked(broker: Any) -> None:
    sink = MqttSink("127.0.0.1", broker.port)
    with pytest.raises(ConfigError, match="kind"):
        sink.publish({"start": 0})
    with pytest.raises(ConfigError, match="message_id"):
        sink.publish({"kind": "window", "message_id": "x"})
    sink.close()
    with pytest.raises(Exception, match="after close"):
        sink.publish(record(0))


def test_host_port_parsing() -> None:
    assert parse_host_port("broker.local", 1883) == ("broker.local", 1883)
    assert parse_host_port("10.0.0.2:1884", 1883) == ("10.0.0.2", 1884)
    assert parse_host_port(":9100", 9100) == ("127.0.0.1", 9100)
    assert parse_host_port("[::1]:8080", 80) == ("::1", 8080)
    with pytest.raises(ConfigError, match="port"):
        parse_host_port("host:http", 1883)
