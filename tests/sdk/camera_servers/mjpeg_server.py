"""A loopback MJPEG-over-HTTP camera for the network camera tests (standard library and OpenCV).

``python mjpeg_server.py PORT IMAGE`` serves ``http://127.0.0.1:PORT/video.mjpg`` the way many IP
cameras do: one ``multipart/x-mixed-replace`` response, a JPEG part per frame, IMAGE (any file
OpenCV reads) 15 times a second. It prints ``READY`` once the port listens and runs until killed.
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

FPS = 15.0
BOUNDARY = "frame"


def handler_for(jpeg: bytes) -> type[BaseHTTPRequestHandler]:
    class Camera(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path != "/video.mjpg":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            next_at = time.monotonic()
            try:
                while True:
                    part = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    self.wfile.write(part.encode() + jpeg + b"\r\n")
                    self.wfile.flush()
                    next_at += 1.0 / FPS
                    time.sleep(max(0.0, next_at - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):
                return  # the client went away

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
            return

    return Camera


def main() -> None:
    port, image = int(sys.argv[1]), sys.argv[2]
    ok, encoded = cv2.imencode(".jpg", cv2.imread(image), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        sys.exit(f"cannot encode {image}")
    server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(encoded.tobytes()))
    server.daemon_threads = True
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
