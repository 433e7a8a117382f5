"""A loopback RTSP camera for the network camera tests, run by the system python3 (GStreamer's ``gi``).

``python3 rtsp_server.py PORT [IMAGE]`` serves ``rtsp://127.0.0.1:PORT/cam``: IMAGE (any file
GStreamer decodes; the test writes the astronaut photo as PNG) or a test pattern, scaled to
640x360 at 15 frames/s, JPEG over RTP (``jpegenc``/``rtpjpegpay``, gstreamer1.0-plugins-good).
It prints ``READY`` once the port listens and runs until killed; ``--check`` exits 0 when
everything it needs is installed (else 1, saying what is missing). Needs the Debian packages
``python3-gi``, ``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-base`` and ``-good``.
"""

from __future__ import annotations

import sys

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as exc:
    sys.exit(f"GStreamer's RTSP server is not available to {sys.executable}: {exc}")

SIZE = "video/x-raw,width=640,height=360"
RATE = "video/x-raw,format=I420,framerate=15/1"


def launch_line(image: str | None) -> str:
    """The media pipeline: a still image repeated (or a moving test pattern), JPEG over RTP."""
    if image:
        source = f'filesrc location="{image}" ! decodebin ! videoconvert ! videoscale ! {SIZE} ! imagefreeze'
    else:
        source = f"videotestsrc is-live=true pattern=ball ! {SIZE}"
    return f"( {source} ! videoconvert ! {RATE} ! jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26 )"


ELEMENTS = (
    "filesrc",
    "decodebin",
    "videotestsrc",
    "videoconvert",
    "videoscale",
    "imagefreeze",
    "jpegenc",
    "rtpjpegpay",
)


def main() -> None:
    Gst.init(None)
    if missing := [name for name in ELEMENTS if Gst.ElementFactory.find(name) is None]:
        sys.exit(f"GStreamer elements missing: {', '.join(missing)} (gstreamer1.0-plugins-base, -good)")
    if sys.argv[1] == "--check":
        return
    port, image = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(image))
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        sys.exit(2)
    print("READY", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
