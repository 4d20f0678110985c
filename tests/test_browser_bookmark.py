"""A bookmark opens the studio's own page on a fresh server (headless Chromium).

`rcsd app` starts Streamlit through rcsd_core/cli/studio_server.py, so the first visit of a new
server that arrives at `/preview` runs app.py's navigation: the sidebar lists the studio's pages
by title (no lowercase file names, no "app" entry) and the Preview page renders at once.

    pytest -m browser tests/test_browser_bookmark.py
"""

from __future__ import annotations

import os
import subprocess

import pytest
from test_browser_e2e import CHROMIUM, REPO, free_port, studio_page, wait_healthy

from rcsd_core.cli.app import app_command

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="system Chromium (/usr/bin/chromium) is not installed")]


def test_first_visit_by_bookmark_gets_the_studio_navigation(tmp_path):
    port = free_port()
    env = {**os.environ, "RCSD_HOME": str(tmp_path / "ws")}
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(app_command("127.0.0.1", port), cwd=tmp_path, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, tmp_path / "server.log")
        # the server's very first visitor, by bookmark
        with studio_page(f"{url}/preview", heading="Preview", exact=True, width=1280, height=900) as page:
            nav = page.locator('[data-testid="stSidebarNav"]')
            links = [t.strip() for t in nav.locator("a").all_inner_texts()]
        assert [link.split("\n")[-1] for link in links] == ["Home", "Rubrics", "Task sets", "Preview", "Review", "Train",
                                                            "Results"], links
    finally:
        server.terminate()
        server.wait(20)
    assert REPO.joinpath("pages", "preview.py").is_file()
