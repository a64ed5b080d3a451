"""/ops in a real browser: headless Chromium from the OS packages, driven by Selenium.

The app runs in a werkzeug server thread on 127.0.0.1 against the test database and Redis.
The browser logs in with HTTP basic auth, sees both queues with their backlog, the risk flag
and the charts, pauses one with its button (a real form POST carrying the session's CSRF
token) and sees it paused. A screenshot of the page is written to build/test-artifacts/.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.support.ops_helpers import OPS_PASSWORD, held_queue, portal
from tests.support.processes import ROOT
from tests.support.release_helpers import query
from throttle_app.release.sending import ReleaseReport
from throttle_app.services import services_of
from throttle_app.telemetry.queue_releases import add_releases

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = ROOT / "build" / "test-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Chromium and chromedriver from the OS packages"
        " (apt-get install chromium chromium-driver; .ci/run installs them)",
    ),
]


@pytest.fixture
def served(make_app) -> Iterator[tuple[str, object]]:
    """The app with two queues of portal 31, one at risk, served on a loopback port."""
    app = make_app(dashboard_password=OPS_PASSWORD)
    now = datetime.now(UTC)
    portal(app, 31, time_zone="America/New_York")
    held_queue(app, "31:100:7", 40, (10, 60), now + timedelta(days=20))
    held_queue(app, "31:200:7", 300, (5, 3600), now + timedelta(hours=6))  # 60 h to drain
    calm = query(app, "SELECT id FROM throttle_queues WHERE queue_key = '31:100:7'")[0][0]
    services_of(app).metrics.count_releases(ReleaseReport(completed=12), calm)
    pipe = services_of(app).redis.pipeline()
    for minutes_ago in range(1, 40):  # a release job's counts over the last 40 minutes
        add_releases(pipe, calm, 10 - minutes_ago % 3, time.time() - 60 * minutes_ago)
    pipe.execute()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--disable-gpu",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def card(driver, key: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'section.queue[data-queue-key="{key}"]')


def test_an_operator_sees_the_queues_and_pauses_one(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.wait import WebDriverWait

    host, app = served
    browser.get(f"http://{host}/ops")  # no credentials: the 401's login prompt, no page
    assert "31:100:7" not in browser.page_source and browser.title != "Throttle: queues"

    browser.get(f"http://admin:{OPS_PASSWORD}@{host}/ops")  # basic auth, as a browser logs in
    assert browser.title == "Throttle: queues"
    calm, risky = card(browser, "31:100:7"), card(browser, "31:200:7")
    assert calm.find_element(By.CSS_SELECTOR, "dd.backlog").text == "40"
    assert risky.find_element(By.CSS_SELECTOR, "dd.backlog").text == "300"
    assert "at risk" in risky.find_element(By.TAG_NAME, "h3").text
    assert "would expire unthrottled" in risky.find_element(By.CSS_SELECTOR, "dd.expiry").text
    assert "at risk" not in calm.text
    chart = calm.find_element(By.CSS_SELECTOR, "svg.chart polyline")
    assert chart.is_displayed() and len(chart.get_attribute("points").split()) == 60
    assert "363 in the last hour" in calm.text  # 12 + 13 x (9 + 8 + 10)
    assert "America/New_York" in browser.find_element(By.ID, "portal-31").text

    calm.find_element(By.XPATH, ".//button[text()='Pause']").click()
    WebDriverWait(browser, 20).until(staleness_of(calm))  # the form's answer replaced the page
    calm = card(browser, "31:100:7")  # the page after the redirect
    assert calm.find_element(By.CSS_SELECTOR, "dd.state").text == "paused"
    assert calm.find_elements(By.XPATH, ".//button[text()='Resume']")
    assert query(app, "SELECT paused FROM throttle_queues WHERE queue_key = '31:100:7'") == [
        (True,)
    ]
    assert card(browser, "31:200:7").find_element(By.CSS_SELECTOR, "dd.state").text == "active"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "ops_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"\nscreenshot of /ops: {shot}")


def test_a_narrow_screen_still_shows_every_card(served, browser):
    """Phone width: one card per row, nothing cut off horizontally."""
    host, _ = served
    browser.set_window_size(390, 844)
    browser.get(f"http://admin:{OPS_PASSWORD}@{host}/ops")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390
    risky = card(browser, "31:200:7")
    assert risky.is_displayed() and risky.rect["width"] <= 390
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = Path(ARTIFACTS / "ops_page_phone.png")
    browser.save_screenshot(str(shot))
    print(f"\nscreenshot of /ops on a phone-sized window: {shot}")
