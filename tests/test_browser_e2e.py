"""End to end in a real browser: the studio served by `streamlit run`, driven by headless Chromium.

Creates a rubric, previews chains with `tiny-random`, flags one, decides it on the Review page,
launches a 2-step `tiny-random` round and waits for it to reach `done` with its charts drawn,
evaluates it on the Results page, and screenshots every page. Uses the system Chromium
(/usr/bin/chromium) through Playwright; nothing is downloaded. Screenshots go to
docs/screenshots/ when RCSD_SCREENSHOTS=1, else to the test's temporary folder.

    pytest -m browser tests/test_browser_e2e.py
    RCSD_SCREENSHOTS=1 pytest -m browser tests/test_browser_e2e.py     # refresh the README's screenshots
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
BROWSER_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="system Chromium (/usr/bin/chromium) is not installed")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    """Until the Streamlit server at `url` answers its health check; RuntimeError with its log if it dies."""
    deadline = time.time() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError("streamlit did not start:\n" + log.read_text())
        time.sleep(0.5)


@pytest.fixture()
def studio(tmp_path):
    """`streamlit run app.py` on a free localhost port with a fresh workspace; yields its URL."""
    port = free_port()
    env = {**os.environ, "RCSD_HOME": str(tmp_path / "ws"), "RCSD_CACHE": str(tmp_path / "cache")}
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, tmp_path / "streamlit.log")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture()
def shots(tmp_path) -> Path:
    folder = REPO / "docs" / "screenshots" if os.environ.get("RCSD_SCREENSHOTS") == "1" else tmp_path / "shots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------------------- page helpers

@contextlib.contextmanager
def studio_page(url: str, *, heading: str = "rcsd studio", exact: bool = False, width: int = 1440, height: int = 1500,
                **options):
    """A headless Chromium page on `url`, once `heading` shows and the script run has ended; the
    browser is closed afterwards. `options` go to new_page (e.g. accept_downloads=True)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, **options)
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("heading", name=heading, exact=exact).first.wait_for()
            idle(page)
            yield page
        finally:
            browser.close()


def idle(page, timeout: float = 120_000) -> None:
    """Wait until the script run finishes (Streamlit's status widget shows 'Running…' meanwhile)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=timeout)


def go(page, title: str, heading: str | None = None) -> None:
    """Navigate with the sidebar (keeps the session, as a user would), then wait for the page heading."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=heading or title, exact=True).first.wait_for(timeout=60_000)
    idle(page)


def choose(page, label: str, option: str, tries: int = 3) -> None:
    """Pick `option` in the selectbox labelled `label`. On a loaded machine a rerun can start after
    idle() has returned and redraw the box under an open list that lacks the option: close the list,
    wait for the script again and reopen it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    item = page.get_by_role("option", name=option, exact=True)
    for _ in range(tries):
        box.click()
        try:
            item.wait_for(timeout=20_000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            idle(page)
            continue
        item.click()
        idle(page)
        return
    raise AssertionError(f"the {label!r} selectbox never offered {option!r}")


def number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def shoot(page, folder: Path, name: str) -> None:
    idle(page)
    page.wait_for_timeout(800)     # let plotly finish drawing
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


# ---------------------------------------------------------------------------- the journey

def test_studio_end_to_end(studio, shots):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)     # two shared CPU cores: renders can lag the script
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 1500})
        page.set_default_timeout(60_000)
        try:
            page.goto(studio)
            page.get_by_role("heading", name="rcsd studio").wait_for()
            idle(page)
            expect(page.get_by_text("grade-school-math").first).to_be_attached()   # a canvas grid cell

            # -- rubric: create one, see its editor, then open the arithmetic sample
            go(page, "Rubrics")
            page.get_by_text("New, duplicate or import").click()
            page.get_by_label("New rubric name", exact=True).fill("e2e-rubric")
            page.get_by_label("What is it for?", exact=True).fill("Made in the browser test.")
            page.get_by_role("button", name="Create").click()
            idle(page)
            expect(page.get_by_text("current version", exact=False).first).to_be_visible()
            choose(page, "Rubric", "e2e-rubric")
            expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
            choose(page, "Rubric", "grade-school-math")
            shoot(page, shots, "rubrics")

            # -- preview with tiny-random
            go(page, "Preview")
            choose(page, "Model", "tiny-random")
            number(page, "Tasks (first N of the train split)", 3)
            number(page, "Samples per task", 2)
            number(page, "Max new tokens", 12)
            page.get_by_role("button", name="Sample chains").click()
            page.get_by_text("Chains × criteria").wait_for(timeout=180_000)
            idle(page)
            expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
            shoot(page, shots, "preview")

            # -- flag the open chain
            page.get_by_label("Reason", exact=True).fill("answer line missing")
            page.get_by_label("Your name", exact=True).fill("ana")
            page.get_by_role("button", name="Flag chain").click()
            page.get_by_text(re.compile(r"Flag #1 added to the review queue")).wait_for()

            # -- decide it on the Review page
            go(page, "Review")
            expect(page.get_by_text("answer line missing").first).to_be_attached()
            page.get_by_label("Reviewer", exact=True).fill("ben")
            page.get_by_text("reject", exact=True).click()
            page.get_by_label("Note", exact=True).fill("no Answer line")
            page.get_by_role("button", name="Record decision").click()
            idle(page)
            page.get_by_text(re.compile(r"reject: 1")).wait_for()
            expect(page.get_by_text("no Answer line").first).to_be_attached()    # in the history table
            shoot(page, shots, "review")

            # -- launch a 2-step tiny-random round and watch it finish
            go(page, "Train")
            choose(page, "Model", "tiny-random")
            number(page, "Steps", 2)
            number(page, "Prompts per step", 1)
            number(page, "Samples per prompt", 2)
            number(page, "Max new tokens", 8)
            number(page, "Eval every (steps)", 0)
            number(page, "Eval prompts", 2)
            page.get_by_role("button", name="Launch round").click()
            idle(page)
            status = page.locator('[data-testid="stMetric"]').filter(has_text="status").first
            expect(status).to_contain_text("done", timeout=400_000)
            idle(page)
            expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
            assert page.locator(".js-plotly-plot .scatterlayer .trace").count() > 0    # lines drawn
            shoot(page, shots, "train")

            # -- results: evaluate base vs adapter, see before/after
            go(page, "Results")
            number(page, "Eval prompts", 2)
            page.get_by_role("button", name="Evaluate base vs adapter now").click()
            page.get_by_text("eval total · before").wait_for(timeout=300_000)
            idle(page)
            expect(page.get_by_role("button", name="Download the HTML report")).to_be_visible()
            shoot(page, shots, "results")

            go(page, "Home", "rcsd studio")
            shoot(page, shots, "home")
        finally:
            page.screenshot(path=str(shots / "last-state.png"))
            browser.close()
    for name in ("home", "rubrics", "preview", "review", "train", "results"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
    (shots / "last-state.png").unlink(missing_ok=True)
