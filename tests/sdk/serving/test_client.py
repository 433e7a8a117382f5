"""The serving client raises the project's ServerError (a FaceSdkError) when no server answers."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from facesdk.errors import FaceSdkError
from facesdk.serving import Client, ServerError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def hangs_up() -> Iterator[int]:
    """A port whose listener reads a little of each request, then closes the connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(64)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_refused_connection_is_a_server_error(protocol: str) -> None:
    url = f"127.0.0.1:{_free_port()}"
    with pytest.raises(ServerError) as caught, Client(url, protocol=protocol, timeout=10) as client:
        client.analyze(np.zeros((32, 32, 3), np.uint8))
    assert isinstance(caught.value, FaceSdkError)


def test_a_lost_connection_is_a_server_error(hangs_up: int) -> None:
    with (
        pytest.raises(ServerError, match="no answer from the Triton server"),
        Client(f"127.0.0.1:{hangs_up}", timeout=10) as client,
    ):
        client.analyze(np.zeros((32, 32, 3), np.uint8))
