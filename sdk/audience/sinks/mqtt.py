"""MQTT sink: audience records to a broker at QoS 1, buffered while the broker is away.

Each record becomes one JSON message on ``{topic}/{kind}`` (``facesdk/audience/window``, ...)
with a ``message_id`` that is unique per message: QoS 1 delivers at least once, so a
subscriber drops a message whose id it has already seen.

Messages wait in a bounded buffer until the broker acknowledges them (PUBACK). While the broker
is down the buffer fills; after it comes back every buffered message is sent again. When the
buffer is full the oldest message is dropped and counted in :attr:`MqttSink.dropped`.

One worker thread owns the paho client: it connects, sends what is buffered, reconnects after
a loss (a fresh client each time, so the buffer here is the only queue), and stops on
:meth:`MqttSink.close`.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from ...errors import ConfigError, FaceSdkError, require

__all__ = ["MqttSink", "parse_host_port"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 1883


def parse_host_port(text: str, default_port: int, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"HOST[:PORT]"``, ``":PORT"`` or ``"[v6]:PORT"`` as ``(host, port)``.

    Raises:
        ConfigError: The port is not a number in 1..65535.
    """
    host, port = text, str(default_port)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"expected HOST[:PORT] with a port in 1..65535, got {text!r}")
    return host or default_host, int(port)


class MqttSink:
    """Publish audience records to an MQTT broker at QoS 1 (``paho-mqtt``, the ``[audience]`` extra).

    Args:
        host: Broker host name or address.
        port: Broker port.
        topic: Topic prefix; each record goes to ``{topic}/{record["kind"]}``.
        buffer: At most this many messages wait for the broker's acknowledgement; past it the
            oldest are dropped and counted in :attr:`dropped`.
        client_id: MQTT client id (default: a random one).
        keepalive: Seconds between keep-alive pings; a silent broker is detected after 1.5x this.
        retry_s: Seconds between connection attempts while the broker is unreachable.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        topic: str = "facesdk/audience",
        buffer: int = 10_000,
        client_id: str | None = None,
        keepalive: int = 15,
        retry_s: float = 1.0,
    ) -> None:
        if buffer < 1:
            raise ConfigError(f"MQTT buffer must hold at least one message, got {buffer}")
        if not topic or "#" in topic or "+" in topic:
            raise ConfigError(f"MQTT topic prefix must be a plain topic without wildcards, got {topic!r}")
        self._mqtt = require("paho.mqtt.client", "audience", "the MQTT sink")
        self.host, self.port, self.topic = host, int(port), topic.rstrip("/")
        self.buffer, self.keepalive, self.retry_s = int(buffer), int(keepalive), float(retry_s)
        self.client_id = client_id or f"facesdk-{uuid.uuid4().hex[:12]}"
        # message_id -> (topic, payload), oldest first; guarded by _lock, shared with the worker
        self._pending: collections.OrderedDict[str, tuple[str, bytes]] = collections.OrderedDict()
        self._lock = threading.Condition()
        self._dropped = 0
        self._delivered = 0
        self._connected = False
        self._closing = False
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._run, name="facesdk-mqtt", daemon=True)
        self._worker.start()

    # -- the caller's side -------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Messages dropped because the buffer was full (oldest first)."""
        with self._lock:
            return self._dropped

    @property
    def delivered(self) -> int:
        """Messages the broker has acknowledged."""
        with self._lock:
            return self._delivered

    @property
    def pending(self) -> int:
        """Messages waiting for the broker's acknowledgement."""
        with self._lock:
            return len(self._pending)

    @property
    def connected(self) -> bool:
        """Whether the worker holds an accepted connection right now."""
        with self._lock:
            return self._connected

    def stats(self) -> dict[str, int]:
        """``pending``, ``delivered``, ``dropped`` and ``connected`` (0/1), read together."""
        with self._lock:
            return {
                "pending": len(self._pending),
                "delivered": self._delivered,
                "dropped": self._dropped,
                "connected": int(self._connected),
            }

    def publish(self, record: Mapping[str, Any]) -> None:
        """Queue ``record`` as one message; it is sent as soon as the broker accepts it.

        Raises:
            ConfigError: The record has no ``kind`` or already carries a ``message_id``.
            FaceSdkError: The sink is closed, or its worker thread failed (the cause is chained).
        """
        if "message_id" in record:
            raise ConfigError("audience records must not carry 'message_id': the MQTT sink sets it")
        kind = record.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f"audience records need a 'kind' string, got {kind!r}")
        message_id = uuid.uuid4().hex
        payload = json.dumps({"message_id": message_id, **record}, separators=(",", ":")).encode()
        with self._lock:
            self._raise_if_failed()
            if self._closing:
                raise FaceSdkError("MqttSink.publish after close()")
            if len(self._pending) >= self.buffer:
                self._pending.popitem(last=False)
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    logger.warning(
                        "MQTT buffer full (%d messages, broker %s:%d unreachable?): %d oldest dropped so far",
                        self.buffer,
                        self.host,
                        self.port,
                        self._dropped,
                    )
            self._pending[message_id] = (f"{self.topic}/{kind}", payload)
            self._lock.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every buffered message is acknowledged; True if so."""
        with self._lock:
            self._lock.wait_for(lambda: not self._pending or self._error is not None, timeout)
            self._raise_if_failed()
            return not self._pending

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is buffered (waiting up to ``timeout`` seconds), then disconnect.

        Messages still unacknowledged after the wait are logged as lost. A worker failure is
        raised here if :meth:`publish` has not raised it already.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
        try:
            delivered = self.flush(timeout)
        finally:
            self._stop.set()
            with self._lock:
                self._lock.notify_all()
            self._worker.join(timeout=max(5.0, timeout))
        if not delivered:
            logger.warning(
                "MQTT sink closed with %d messages not acknowledged by %s:%d",
                self.pending,
                self.host,
                self.port,
            )

    def __enter__(self) -> MqttSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise FaceSdkError(f"the MQTT sink's worker failed: {self._error!r}") from self._error

    # -- the worker's side -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            first = True
            while not self._stop.is_set():
                if not first and self._stop.wait(self.retry_s):
                    break
                first = False
                client = self._connect()
                if client is not None:
                    try:
                        self._serve(client)
                    finally:
                        with self._lock:
                            self._connected = False
                        self._hang_up(client)
        except BaseException as exc:  # reaches the caller through publish/flush/close
            logger.exception("MQTT sink worker failed")
            with self._lock:
                self._error = exc
                self._lock.notify_all()

    @staticmethod
    def _hang_up(client: Any) -> None:
        """Send DISCONNECT where the connection still stands, and close the socket."""
        client.disconnect()
        client.loop(0.05)  # writes the DISCONNECT packet; a lost connection just reports itself

    def _connect(self) -> Any:
        """A client with an accepted session, or None (logged) when the broker is unreachable."""
        mqtt = self._mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        state: dict[str, Any] = {"accepted": None, "mids": {}}

        def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
            state["accepted"] = not reason.is_failure
            if reason.is_failure:
                logger.warning("MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason)

        def on_publish(_c: Any, _u: Any, mid: int, _reason: Any, _props: Any) -> None:
            message_id = state["mids"].pop(mid, None)
            with self._lock:
                if message_id is not None and self._pending.pop(message_id, None) is not None:
                    self._delivered += 1
                    self._lock.notify_all()

        client.on_connect, client.on_publish = on_connect, on_publish
        client.user_data_set(state)
        try:
            client.connect(self.host, self.port, keepalive=self.keepalive)
        except OSError as exc:
            logger.debug("MQTT broker %s:%d unreachable: %s", self.host, self.port, exc)
            return None
        deadline = 50  # CONNACK within 50 loop turns of 0.1 s
        while state["accepted"] is None and deadline and not self._stop.is_set():
            if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                break
            deadline -= 1
        if not state["accepted"]:
            self._hang_up(client)
            return None
        logger.info("MQTT connected to %s:%d", self.host, self.port)
        with self._lock:
            self._connected = True
        return client

    def _serve(self, client: Any) -> None:
        """Send buffered messages and run the network loop until the connection or the sink ends."""
        mqtt = self._mqtt
        mids: dict[int, str] = client.user_data_get()["mids"]
        sent: set[str] = set()  # message ids handed to this client (it resends them itself while it lives)
        while not self._stop.is_set():
            with self._lock:
                todo = [(mid, item) for mid, item in self._pending.items() if mid not in sent]
                sent.intersection_update(self._pending)  # forget dropped and acknowledged ids
            for message_id, (topic, payload) in todo:
                info = client.publish(topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                mids[info.mid] = message_id
                sent.add(message_id)
            rc = client.loop(0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                logger.warning("MQTT connection to %s:%d lost (%s); reconnecting", self.host, self.port, rc)
                return
            with self._lock:
                if not any(mid not in sent for mid in self._pending):
                    self._lock.wait(0.05)
