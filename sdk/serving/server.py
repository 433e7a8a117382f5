"""Run the ``tritonserver`` from the serving environment on loopback, as a context manager."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ..errors import BackendError
from .env import ServingEnv, find_env

__all__ = ["TritonServer", "free_port"]

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (bind to port 0 and read what the OS chose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class TritonServer:
    """``tritonserver`` serving ``repository`` on 127.0.0.1; started on enter, stopped on exit.

    Args:
        repository: A model repository (``facesdk serve export``).
        models: Models to load (explicit model control); ``None`` loads every model.
        env: The serving environment (default :func:`facesdk.serving.env.find_env`).
        http_port, grpc_port: Ports (``0``: pick free ones).
        host: Address to bind (loopback by default).
        startup_timeout: Seconds to wait for the server to report ready.
        log_path: Where the server's output goes (default: a file in the work directory).
        exit_timeout: Seconds the server waits for open connections and in-flight requests on stop.
    """

    def __init__(
        self,
        repository: str | os.PathLike[str],
        models: Sequence[str] | None = None,
        env: ServingEnv | None = None,
        http_port: int = 0,
        grpc_port: int = 0,
        host: str = "127.0.0.1",
        startup_timeout: float = 120.0,
        log_path: str | os.PathLike[str] | None = None,
        exit_timeout: int = 5,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.models = list(models) if models is not None else None
        self.env = env or find_env()
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.startup_timeout = startup_timeout
        self.exit_timeout = exit_timeout
        self._log_path = Path(log_path) if log_path else None
        self._workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def log_file(self) -> Path | None:
        return self._log_path

    def _backend_dir(self, workdir: Path) -> Path:
        """A backend directory whose Python backend carries the stub for the environment's Python."""
        python = workdir / "backends" / "python"
        python.mkdir(parents=True)
        for item in self.env.python_backend.iterdir():
            if item.is_file():
                os.symlink(item, python / item.name)
        shutil.copy2(self.env.stub, python / "triton_python_backend_stub")
        return workdir / "backends"

    def command(self, backends: Path) -> list[str]:
        cmd = [
            str(self.env.tritonserver),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-on-error=true",
            "--strict-readiness=true",
            f"--exit-timeout-secs={self.exit_timeout}",
        ]
        if self.models is not None:
            cmd.append("--model-control-mode=explicit")
            cmd += [f"--load-model={name}" for name in self.models]
        return cmd

    def start(self) -> TritonServer:
        """Launch the server and wait until it reports ready (raise BackendError with its log if not)."""
        self._workdir = Path(tempfile.mkdtemp(prefix="facesdk-triton-"))
        backends = self._backend_dir(self._workdir)
        self._log_path = self._log_path or self._workdir / "tritonserver.log"
        cmd = self.command(backends)
        logger.info("starting %s", " ".join(cmd))
        with open(self._log_path, "wb") as log:
            self.process = subprocess.Popen(
                cmd, env=self.env.environ(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self.stop()
                raise BackendError(f"tritonserver exited with {code}:\n{self.log_tail()}")
            if self.ready():
                logger.info("tritonserver ready: http %s, grpc %s", self.http_url, self.grpc_url)
                return self
            time.sleep(0.25)
        self.stop()
        raise BackendError(f"tritonserver not ready after {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1.0) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, chars: int = 4000) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the server (SIGINT, then SIGKILL after ``timeout``); return its exit code (idempotent)."""
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("tritonserver did not stop in %.0f s; killing it", timeout)
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            code = process.returncode
        if self._workdir is not None:
            for name in ("backends",):
                shutil.rmtree(self._workdir / name, ignore_errors=True)
        return code

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
