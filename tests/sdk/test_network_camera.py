"""Real network cameras on loopback: streams that run, break, stall and come back.

Each test starts a camera server as a process of its own (``camera_servers/``): an RTSP server
(GStreamer's gst-rtsp-server, run by the system ``python3``; Debian's ``python3-gi``,
``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-base`` and ``-good``, installed by
``.ci/run``) and an MJPEG-over-HTTP server (standard library), both serving the astronaut at
640x360, 15 frames/s. The tests kill, pause (SIGSTOP: the connection stays open, nothing comes)
and restart the server while :meth:`Analyzer.streams` reads it beside a second source (the
``analyzer`` fixture of tests/sdk/conftest.py: the tiny export on ONNX Runtime with YuNet).

Nothing here asserts a duration except the bounds a fault must be detected within; every wait
is for an event, under a guard that fails the test instead of hanging it.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesdk import Analyzer
from facesdk.errors import SourceError
from facesdk.results import FrameResult
from facesdk.streams import FrameStream, MultiStream

SERVERS = Path(__file__).parent / "camera_servers"
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"
GUARD_S = 60.0
"""Most seconds one scenario may run before the test fails as hung."""
FPS = 15.0

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rtsp_unavailable() -> str | None:
    """Why the RTSP server cannot run here (``None`` when it can)."""
    if not Path(SYSTEM_PYTHON).is_file():
        return f"{SYSTEM_PYTHON} not found (the RTSP server needs the system python3 with {RTSP_PACKAGES})"
    check = subprocess.run(
        [SYSTEM_PYTHON, str(SERVERS / "rtsp_server.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check.returncode != 0:
        why = (check.stderr.strip().splitlines() or ["failed"])[-1]
        return f"no RTSP server: {why} (apt-get install {RTSP_PACKAGES})"
    return None


class CameraServer:
    """A camera server process on a fixed loopback port that a test can kill, pause and restart."""

    def __init__(self, kind: str, image: Path) -> None:
        self.kind, self.port = kind, free_port()
        script = SERVERS / f"{kind}_server.py"
        python = SYSTEM_PYTHON if kind == "rtsp" else sys.executable
        self.command = [python, str(script), str(self.port), str(image)]
        path = "cam" if kind == "rtsp" else "video.mjpg"
        self.url = f"{'rtsp' if kind == 'rtsp' else 'http'}://127.0.0.1:{self.port}/{path}"
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it says it listens (its stderr goes to a file, never a full pipe)."""
        with tempfile.TemporaryFile() as log:  # the child keeps its own handle
            process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=log, text=True)
            self.process = process
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            line = process.stdout.readline() if ready else ""
            if line.strip() != "READY":
                self.kill()
                log.seek(0)
                pytest.fail(f"the {self.kind} server did not start: {line!r} {log.read()[-2000:]!r}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections open and sends nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory: pytest.TempPathFactory, astronaut_bgr: np.ndarray) -> Path:
    """The astronaut centred on a 640x360 canvas, as the cameras serve it."""
    canvas = np.full((360, 640, 3), 90, np.uint8)
    canvas[:, 140:500] = cv2.resize(astronaut_bgr, (360, 360), interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("camera") / "scene.png"
    cv2.imwrite(str(path), canvas)
    return path


@pytest.fixture(params=["rtsp", "mjpeg"])
def camera(request: pytest.FixtureRequest, scene_png: Path) -> Iterator[CameraServer]:
    """A running camera server (RTSP or MJPEG over HTTP); skips RTSP where GStreamer is missing."""
    if request.param == "rtsp" and (why := rtsp_unavailable()):
        pytest.skip(why)
    server = CameraServer(request.param, scene_png)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def paced_frames(image: np.ndarray, stop: threading.Event, limit: int | None = None) -> Iterator[np.ndarray]:
    """A second source: ``image`` at about 15 frames/s until ``stop`` is set (or ``limit`` frames)."""
    count = 0
    while not stop.is_set() and (limit is None or count < limit):
        yield image
        count += 1
        stop.wait(1.0 / FPS)


def facesdk_threads(before: set[threading.Thread], timeout: float = 15.0) -> list[str]:
    """Names of the ``facesdk-`` threads started since ``before`` still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = [t.name for t in threading.enumerate() if t.name.startswith("facesdk-") and t not in before]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@dataclass
class Scenario:
    """Results seen so far by source, and the moments of each fault (``time.time()``)."""

    results: dict[str, list[FrameResult]] = field(default_factory=lambda: {"cam": [], "file": []})
    marks: dict[str, float] = field(default_factory=dict)
    error: BaseException | None = None

    def count(self, source: str, since: str | None = None) -> int:
        after = self.marks.get(since, 0.0) if since else 0.0
        return sum(r.timestamp >= after for r in self.results[source])


def run_guarded(multi: MultiStream, step: Callable[[Scenario, FrameResult], bool]) -> Scenario:
    """Iterate ``multi`` in a thread, calling ``step`` per result until it returns true or the
    stream ends; fail the test (closing the stream) when that takes over :data:`GUARD_S`."""
    scenario = Scenario()

    def consume() -> None:
        try:
            for result in multi:
                scenario.results[result.source].append(result)
                if step(scenario, result):
                    break
        except BaseException as exc:
            scenario.error = exc
        finally:
            multi.close()

    consumer = threading.Thread(target=consume, name="test-consumer", daemon=True)
    consumer.start()
    consumer.join(GUARD_S)
    if consumer.is_alive():
        multi.close()
        pytest.fail(f"the stream did not finish within {GUARD_S:.0f} s; marks {scenario.marks}")
    if scenario.error is not None:
        raise scenario.error
    return scenario


def estimated_faces(results: list[FrameResult], since: float) -> int:
    return sum(f.estimated for r in results if r.timestamp >= since for f in r.faces)


def test_camera_reconnects_after_restart_while_other_source_flows(
    camera: CameraServer, analyzer: Analyzer, scene_png: Path
) -> None:
    before = set(threading.enumerate())
    stop_file = threading.Event()
    cam = FrameStream(camera.url, backoff=(0.2, 1.0), max_retries=30, open_timeout_s=5.0, read_timeout_s=5.0)
    multi = analyzer.streams({"cam": cam, "file": paced_frames(cv2.imread(str(scene_png)), stop_file)})

    def step(s: Scenario, result: FrameResult) -> bool:
        if multi.errors:  # a lost camera will not come back: end here and report it below
            stop_file.set()
            return True
        if "killed" not in s.marks and estimated_faces(s.results["cam"], 0.0) >= 3:
            camera.kill()
            s.marks["killed"] = time.time()
        elif "restarted" not in s.marks and "killed" in s.marks and s.count("file", "killed") >= 20:
            # the camera has been down for over a second of the other source's frames
            camera.start()
            s.marks["restarted"] = time.time()
        elif "restarted" in s.marks and estimated_faces(s.results["cam"], s.marks["restarted"]) >= 3:
            stop_file.set()
            return True
        return False

    with multi:
        s = run_guarded(multi, step)
    assert multi.errors == {}
    assert cam.reconnects >= 1
    assert s.count("file", "killed") >= 20, "the other source stopped while the camera was down"
    assert s.count("cam", "restarted") >= 3, "no camera results after the server came back"
    cam_indices = [r.index for r in s.results["cam"]]
    assert cam_indices == sorted(cam_indices), "camera results out of frame order across the reconnect"
    assert facesdk_threads(before) == []


def expected_loss_s(stream: FrameStream) -> float:
    """The longest a lost network source may take to be reported, by its policy: one stalled read,
    then ``max_retries`` opens that each time out, after their backoff waits."""
    first, limit = stream.backoff
    waits = sum(min(first * 2**i, limit) for i in range(stream.max_retries))
    return stream.read_timeout_s + waits + stream.max_retries * stream.open_timeout_s


def test_camera_that_never_returns_is_reported_lost_while_other_source_finishes(
    camera: CameraServer, analyzer: Analyzer, scene_png: Path
) -> None:
    before = set(threading.enumerate())
    cam = FrameStream(camera.url, backoff=(0.2, 1.0), max_retries=3, open_timeout_s=2.0, read_timeout_s=2.0)
    frames = 90  # six seconds of the other source: it outlives the camera
    multi = analyzer.streams(
        {"cam": cam, "file": paced_frames(cv2.imread(str(scene_png)), threading.Event(), frames)}
    )

    def step(s: Scenario, result: FrameResult) -> bool:
        if "killed" not in s.marks and len(s.results["cam"]) >= 5:
            camera.kill()
            s.marks["killed"] = time.time()
        if "lost" not in s.marks and "cam" in multi.errors:
            s.marks["lost"] = time.time()
        return False

    with multi:
        s = run_guarded(multi, step)
    lost = s.marks.get("lost", time.time())
    assert set(multi.errors) == {"cam"}, multi.errors
    assert isinstance(multi.errors["cam"], SourceError)
    assert "could not be reopened" in str(multi.errors["cam"])
    assert len(s.results["file"]) == frames, "the other source did not finish normally"
    assert cam.reconnects == 0
    bound = expected_loss_s(cam) + 10.0  # slack for a loaded machine
    assert lost - s.marks["killed"] <= bound, (
        f"lost after {lost - s.marks['killed']:.1f} s, policy allows {bound:.1f}"
    )
    assert facesdk_threads(before) == []


def test_stalled_camera_read_ends_within_the_read_timeout(
    camera: CameraServer, analyzer: Analyzer, caplog: pytest.LogCaptureFixture
) -> None:
    before = set(threading.enumerate())
    read_timeout = 1.0
    cam = FrameStream(
        camera.url, backoff=(0.2, 1.0), max_retries=1, open_timeout_s=1.0, read_timeout_s=read_timeout
    )
    multi = analyzer.streams({"cam": cam})

    def step(s: Scenario, result: FrameResult) -> bool:
        if "paused" not in s.marks and len(s.results["cam"]) >= 5:
            camera.pause()  # the connection stays open; nothing more comes
            s.marks["paused"] = time.time()
        return False

    with caplog.at_level(logging.WARNING, logger="facesdk.streams.sources"), multi:
        s = run_guarded(multi, step)
    stalled = [r.created for r in caplog.records if "stopped delivering frames" in r.getMessage()]
    assert stalled, "the stalled read never ended"
    # OpenCV's FFmpeg reads wait 30 s by default: the read timeout must end the read long before
    waited = stalled[0] - s.marks["paused"]
    assert waited <= read_timeout + 4.0, (
        f"a stalled read blocked {waited:.1f} s (read timeout {read_timeout} s)"
    )
    assert isinstance(multi.errors.get("cam"), SourceError), multi.errors
    assert facesdk_threads(before) == []


def test_server_that_accepts_and_sends_nothing_fails_the_open_within_its_timeout() -> None:
    """A port that accepts connections and never answers: opening gives up after ``open_timeout_s``."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        for url in (f"rtsp://127.0.0.1:{port}/cam", f"http://127.0.0.1:{port}/video.mjpg"):
            start = time.monotonic()
            with pytest.raises(SourceError, match="cannot open"):
                FrameStream(url, open_timeout_s=1.0, read_timeout_s=1.0)
            waited = time.monotonic() - start
            assert waited <= 1.0 + 4.0, f"opening {url} blocked {waited:.1f} s (open timeout 1 s)"
