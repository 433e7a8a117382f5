"""The live dashboard in a real headless browser (Debian's chromium and chromium-driver, Selenium).

``FACESDK_DASHBOARD_SCREENSHOT=docs/audience_dashboard.png`` saves the page as the browser drew it
(the screenshot in docs/audience.md comes from this test).
"""

from __future__ import annotations

import fnmatch
import http.client
import itertools
import json
import os
import re
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facesdk.audience import Audience, AudienceConfig
from facesdk.audience.dashboard import Dashboard, Latest
from facesdk.audience.simulate import random_people, scripted_frames
from facesdk.errors import ConfigError

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium driven by Selenium, pointed at Debian's binaries (Selenium Manager stays offline)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed ([dev] extra)")
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(
            "chromium and chromium-driver not installed (Debian: apt-get install -y chromium chromium-driver)"
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager fetch a browser or driver
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,960"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
        yield driver
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


PAGE_STATE = """
const text = (id) => document.getElementById(id).textContent;
return {
  in_view: text("in-view"),
  last_passers: text("window-passers"),
  last_viewers: text("window-viewers"),
  bars: [...document.querySelectorAll("#chart-windows rect")].map((r) => r.getAttribute("data-value")),
  preview_hidden: document.getElementById("preview-panel").hidden,
};
"""


def page(driver: Any) -> dict[str, Any]:
    """What the page shows now, read in one script (the page redraws between two element reads)."""
    return driver.execute_script(PAGE_STATE)


def wait_for(driver: Any, condition: Any, what: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def test_page_shows_the_snapshot_and_follows_the_stream(browser: Any) -> None:
    audience = Audience(AudienceConfig(window_s=60.0))
    people = list(random_people(50 * 60, per_minute=10, seed=3))
    frames = scripted_frames(people, 50 * 60, fps=2)
    for frame in itertools.islice(frames, 2 * 20 * 60):  # 20 minutes
        audience.update(frame)
    first = audience.snapshot()
    latest = Latest(first)
    with Dashboard(latest.get, port=0, poll_s=0.2) as board:
        browser.get(board.url)
        total = str(first["in_view"]["total"])
        wait_for(browser, lambda d: page(d)["in_view"] == total, "the first snapshot")
        windows, bars = first["windows"], page(browser)["bars"]
        assert len(bars) == 2 * len(windows) >= 30  # passers-by and viewers per window
        withheld = sum(w["viewers"] is None for w in windows) + sum(w["passers_by"] is None for w in windows)
        assert withheld > 0  # the run has windows with fewer than k viewers
        assert bars.count("withheld") == withheld  # drawn as withheld, never as zero
        published = [w[key] for w in windows for key in ("passers_by", "viewers") if w[key] is not None]
        assert sorted(int(b) for b in bars if b != "withheld") == sorted(published)

        for frame in itertools.islice(frames, 2 * 25 * 60 + 7):  # the stream advances 25 minutes
            audience.update(frame)
        second = audience.snapshot()
        assert len(second["windows"]) > len(windows)
        latest.set(second)
        count = 2 * len(second["windows"])
        wait_for(browser, lambda d: len(page(d)["bars"]) == count, "the page to follow the new snapshot")
        now = page(browser)
        assert now["in_view"] == str(second["in_view"]["total"])
        assert now["last_passers"] == str(second["windows"][-1]["passers_by"])
        viewers = second["windows"][-1]["viewers"]
        assert now["last_viewers"] == (f"< {second['k']}" if viewers is None else str(viewers))
        assert now["preview_hidden"]

        origin = board.url.rstrip("/")
        urls = requested_urls(browser)
        assert {u.split("?")[0] for u in urls} >= {f"{origin}/api/snapshot", f"{origin}/dashboard.js"}
        assert all(u == origin or u.startswith(origin + "/") for u in urls), urls  # nothing leaves loopback
        assert not any("preview" in u for u in urls)  # no camera image unless asked for

        target = os.environ.get("FACESDK_DASHBOARD_SCREENSHOT")
        if target:
            browser.set_window_size(1280, 960)
            browser.save_screenshot(target)


def test_preview_shows_the_annotated_frame_on_the_local_page(browser: Any) -> None:
    frame = np.zeros((120, 160, 3), np.uint8)
    cv2.rectangle(frame, (40, 30), (120, 100), (0, 255, 0), 2)
    jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    with Dashboard(lambda: {}, port=0, preview=lambda: jpeg, poll_s=0.2) as board:
        browser.get(board.url)
        wait_for(
            browser,
            lambda d: d.execute_script("return document.getElementById('preview').naturalWidth") == 160,
            "the preview image",
        )


def test_the_package_serves_every_file_the_page_uses_and_names_no_other_site() -> None:
    static = resources.files("facesdk.audience.dashboard").joinpath("static")
    names = sorted(p.name for p in static.iterdir())
    assert names == ["dashboard.css", "dashboard.js", "index.html"]
    for name in names:
        body = static.joinpath(name).read_text()
        assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", body), name  # no URL of any site
    page = static.joinpath("index.html").read_text()
    assert set(re.findall(r'(?:src|href)="([^"]+)"', page)) == {"/dashboard.css", "/dashboard.js"}


def test_loopback_by_default_preview_refused_elsewhere_and_foreign_host_names_refused() -> None:
    with Dashboard(lambda: {"k": 3}, port=0) as board:
        assert board.host == "127.0.0.1"
        with urllib.request.urlopen(board.url + "api/snapshot", timeout=10) as response:
            assert json.loads(response.read()) == {"k": 3}
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        connection = http.client.HTTPConnection("127.0.0.1", board.port, timeout=10)
        connection.request("GET", "/api/snapshot", headers={"Host": "attacker.example:80"})
        assert connection.getresponse().status == 421  # a rebound DNS name cannot read the page
        connection.close()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(board.url + "preview.jpg", timeout=10)  # no preview unless given
    with pytest.raises(ConfigError, match="loopback only"):
        Dashboard(lambda: {}, host="0.0.0.0", port=0, preview=lambda: b"")


def test_pyproject_ships_every_file_of_the_page() -> None:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads pyproject.toml")
    setup = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]
    assert "facesdk.audience.dashboard.static" in setup["packages"]
    patterns = setup["package-data"]["facesdk.audience.dashboard.static"]
    static = resources.files("facesdk.audience.dashboard").joinpath("static")
    for item in static.iterdir():
        assert any(fnmatch.fnmatch(item.name, p) for p in patterns), f"{item.name} not in the wheel"
