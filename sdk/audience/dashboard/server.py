"""The live dashboard: one page, its script and style, and a JSON snapshot, from the standard library.

Everything the page uses is served from this package (``static/``): no CDN, no external URL, and
a Content-Security-Policy of ``'self'`` makes the browser refuse anything else. The server binds
to loopback unless another address is given. The camera preview (``preview=``) is refused on
any other address and is answered to loopback clients only.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from ...errors import ConfigError

__all__ = ["Dashboard", "Latest", "is_loopback"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) means this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Latest(Generic[T]):
    """The latest value one thread hands to others (a snapshot, a JPEG): one lock, no queue."""

    def __init__(self, value: T | None = None) -> None:
        self._lock = threading.Lock()
        self._value = value

    def set(self, value: T | None) -> None:
        with self._lock:
            self._value = value

    def get(self) -> T | None:
        with self._lock:
            return self._value


class Dashboard:
    """Serve the live page on ``http://HOST:PORT/`` from a thread.

    Args:
        snapshot: Thread-safe callable returning an :meth:`facesdk.audience.Audience.snapshot`
            mapping (hand it a :class:`Latest` getter when the audience runs in another thread).
        host: Address to bind; loopback unless another is given explicitly.
        port: Port (0: any free port; :attr:`port` says which).
        preview: Optional thread-safe callable returning the latest annotated frame as JPEG
            bytes. Only on a loopback address, and answered to loopback clients only.
        poll_s: How often the page asks for a new snapshot.
    """

    def __init__(
        self,
        snapshot: Callable[[], Mapping[str, Any] | None],
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        preview: Callable[[], bytes | None] | None = None,
        poll_s: float = 1.0,
    ) -> None:
        if preview is not None and not is_loopback(host):
            raise ConfigError(
                f"the camera preview is served on loopback only, but the dashboard would bind {host!r}; "
                "drop --preview or serve on 127.0.0.1"
            )
        if not poll_s > 0:
            raise ConfigError(f"dashboard poll interval must be positive seconds, got {poll_s}")
        self.snapshot, self.preview, self.poll_s = snapshot, preview, float(poll_s)
        handler = type("_BoundHandler", (_Handler,), {"dashboard": self})
        self._server = ThreadingHTTPServer((host, int(port)), handler)
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="facesdk-dashboard", daemon=True
        )
        self._thread.start()
        logger.info("dashboard on %s", self.url)

    @property
    def url(self) -> str:
        """The page's address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def config(self) -> dict[str, Any]:
        """What the page needs to know besides the snapshot."""
        return {"poll_ms": round(self.poll_s * 1000), "preview": self.preview is not None}

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    dashboard: Dashboard
    server_version = "facesdk-dashboard"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = urlsplit(self.path).path
        if not self._host_allowed():
            self._send(HTTPStatus.MISDIRECTED_REQUEST, b"unexpected Host header\n", "text/plain")
        elif path in STATIC:
            name, content_type = STATIC[path]
            body = resources.files(__package__).joinpath("static", name).read_bytes()
            self._send(HTTPStatus.OK, body, content_type)
        elif path == "/api/snapshot":
            self._json(self.dashboard.snapshot() or {})
        elif path == "/api/config":
            self._json(self.dashboard.config())
        elif path == "/preview.jpg" and self.dashboard.preview is not None and self._client_local():
            frame = self.dashboard.preview()
            if frame is None:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain")
            else:
                self._send(HTTPStatus.OK, frame, "image/jpeg")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _host_allowed(self) -> bool:
        """On loopback, only loopback Host names (a page on another site cannot rebind its name here)."""
        if not is_loopback(self.dashboard.host):
            return True
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        return is_loopback(host)

    def _client_local(self) -> bool:
        return is_loopback(str(self.client_address[0]))

    def _json(self, value: Any) -> None:
        body = json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
        self._send(HTTPStatus.OK, body, "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        logger.debug("%s " + format, self.address_string(), *args)
