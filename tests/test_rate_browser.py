"""The rating page in a real browser (Debian's chromium + chromium-driver through Selenium), end to end.

Starts the real `supporttune rate` command on a small hand-made suite, rates with the mouse and
the keyboard, reloads, rates more, restarts the server with a key and no fixed rater (name and
key forms), then rebuilds the report and checks its Human preference section.
Set SUPPORTTUNE_SCREENSHOTS=DIR to keep the wide and narrow screenshots it takes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_rate_logic import ENTRIES, make_suite

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(suite: Path, *args: str):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "supporttune", "rate", str(suite), "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"rate server exited: {proc.stdout.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("rate server did not start in 60 s")


@pytest.fixture()
def browser(tmp_path):
    if not CHROMIUM or not DRIVER:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); .ci/run installs them")
    from selenium import webdriver  # in the dev extra: missing selenium is a failure, not a skip
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(driver, cond, what, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: cond(d), message=what)


def rated(driver) -> int:
    text = driver.find_element("id", "progress-text").text
    return int(text.split(" / ")[0]) if " / " in text else -1


def ready(driver, n):
    """Wait until the page shows a new comparison after n decided votes."""
    wait(driver, lambda d: rated(d) == n and d.find_element("id", "text-a").text and
         all(not b.get_attribute("disabled") for b in d.find_elements("css selector", ".actions button")), f"{n} rated")


def shot(driver, name, width, height):
    keep = os.environ.get("SUPPORTTUNE_SCREENSHOTS")
    driver.set_window_size(width, height)
    time.sleep(0.3)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(keep) / f"{name}.png"))
    assert driver.get_screenshot_as_png()[:4] == b"\x89PNG"


def test_rate_in_chromium_then_report(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    suite = make_suite(tmp_path / "suite")
    server, url = _server(suite, "--rater", "ann", "--planned", "40")
    try:
        d = browser
        d.get(url)
        ready(d, 0)
        assert "rating as ann" in d.find_element(By.ID, "rater").text
        assert not any(name in d.page_source for name in ENTRIES)  # blind
        shot(d, "rate-wide", 1400, 900)
        shot(d, "rate-narrow", 390, 844)
        d.set_window_size(1400, 900)
        # the mouse: six votes, one with a flag on each reply
        for k, button in enumerate(["btn-a", "btn-b", "btn-tie", "btn-both_bad", "btn-a", "btn-b"]):
            if k == 0:
                d.find_element(By.CSS_SELECTOR, ".flags[data-side=a] input[value=rude]").find_element(By.XPATH, "..").click()
                d.find_element(By.CSS_SELECTOR, ".flags[data-side=b] input[value=wrong_info]").click()
            d.find_element(By.ID, button).click()
            ready(d, k + 1)
        d.find_element(By.ID, "reveal").click()
        assert "Real agent reply" in d.find_element(By.ID, "reference").text
        # the keyboard: six votes and a skip
        body = d.find_element(By.TAG_NAME, "body")
        for k, key in enumerate("123412"):
            body.send_keys(key)
            ready(d, 7 + k)
        body.send_keys("s")
        wait(d, lambda d: "1 skipped" in d.find_element(By.ID, "progress-text").text, "skip")
        body.send_keys("r")
        assert d.find_element(By.ID, "reference").is_displayed() is False  # nothing to reveal after a skip
        before = d.find_element(By.ID, "customer").text
        d.refresh()  # a reload shows the same open comparison and keeps counting
        ready(d, 12)
        assert d.find_element(By.ID, "customer").text == before
        for k, key in enumerate("2134"):
            d.find_element(By.TAG_NAME, "body").send_keys(key)
            ready(d, 13 + k)
        d.find_element(By.TAG_NAME, "body").send_keys("r")
        assert "Real agent reply" in d.find_element(By.ID, "reference").text
        shot(d, "rate-after-vote-narrow", 390, 844)
    finally:
        server.terminate()
        server.wait(10)

    # a second rater, on a server with a key and no fixed rater: the page asks for both once
    server, url = _server(suite, "--api-key", "k3y")
    try:
        d = browser
        d.delete_all_cookies()
        d.execute_script("localStorage.clear(); sessionStorage.clear();")
        d.set_window_size(1400, 900)
        d.get(url)
        wait(d, lambda d: d.find_element(By.ID, "login").is_displayed(), "login form")
        shot(d, "rate-login", 1400, 900)
        d.find_element(By.ID, "name").send_keys("bob")
        d.find_element(By.ID, "key").send_keys("k3y", Keys.ENTER)
        ready(d, 0)
        for k, key in enumerate("1234"):
            d.find_element(By.TAG_NAME, "body").send_keys(key)
            ready(d, k + 1)
    finally:
        server.terminate()
        server.wait(10)

    votes = [json.loads(x) for x in (suite / "ratings.jsonl").read_text().splitlines()]
    assert [sum(v["rater"] == r and v["choice"] != "skip" for v in votes) for r in ("ann", "bob")] == [16, 4]
    assert votes[0]["flags"] == {"left": ["rude"], "right": ["wrong_info"]}
    res = subprocess.run([sys.executable, "-m", "supporttune", "report", str(suite)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    hp = json.loads((suite / "results.json").read_text())["human_preference"]
    assert hp["votes"] == 20 and hp["votes_by_rater"] == {"ann": 16, "bob": 4} and hp["skips"] == 1
    assert set(hp["ranking"]) == set(ENTRIES) and isinstance(hp["disagrees_with_metrics"], bool)
    md = (suite / "report.md").read_text()
    assert "## Human preference" in md and "20 blind votes by 2 raters" in md and "Bradley-Terry strengths" in md
    d.get((suite / "report.html").as_uri())
    assert d.find_element(By.XPATH, "//h2[text()='Human preference']").is_displayed()
    shot(d, "report-preference", 1400, 1400)
