"""A domain expert's afternoon in a real browser (headless Chromium, the studio served by Streamlit):
choose a rubric and a task set that is not its usual one and get those tasks sampled; pick an
OpenAI-compatible judge (a local fake endpoint that answers "Yes") and see the judged criteria
scored; import a CSV task set; start a long preview and cancel it.

    pytest -m browser tests/test_browser_afternoon.py
"""

from __future__ import annotations

import re
import threading
from http.server import ThreadingHTTPServer

import pytest
from test_browser_e2e import CHROMIUM, choose, go, idle, number, studio, studio_page  # noqa: F401  (a fixture)
from test_browser_formats import select_by_typing
from test_remote_judge import Endpoint, make_handler

from rcsd_core.studio import workspace as ws

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="system Chromium (/usr/bin/chromium) is not installed")]

KEY_ENV = "RCSD_AFTERNOON_JUDGE_KEY"


@pytest.fixture()
def judge_url(monkeypatch):
    """A fake OpenAI-compatible judge on localhost that says "Yes"; its key is in the studio's environment."""
    monkeypatch.setenv(KEY_ENV, "sk-test")          # set before the studio fixture starts the server
    endpoint = Endpoint()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(endpoint))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", endpoint
    httpd.shutdown()
    httpd.server_close()


def test_an_afternoon_in_the_studio(judge_url, studio, tmp_path):
    from playwright.sync_api import expect

    url, endpoint = judge_url
    home = tmp_path / "ws"
    expect.set_options(timeout=60_000)
    with studio_page(studio, height=1600) as page:

        # -- a rubric and a task set that is not its usual one, then a judge, then sample
        go(page, "Preview")
        choose(page, "Rubric", "science-explainer")
        choose(page, "Task set", "legal")
        choose(page, "Model", "tiny-random")
        number(page, "Tasks (first N of the train split)", 2)
        number(page, "Samples per task", 1)
        number(page, "Max new tokens", 8)
        page.get_by_text("student", exact=True).click()
        select_by_typing(page, "Judge for criteria without a check", "an OpenAI-compatible endpoint")
        page.get_by_label("Judge model", exact=True).fill("judge-model")
        page.get_by_label("Endpoint URL", exact=True).fill(url)
        page.get_by_label("Key from environment variable", exact=True).fill(KEY_ENV)
        page.get_by_role("button", name="Sample chains").click()
        page.get_by_text(re.compile(r"tokens in .* tokens/s")).wait_for(timeout=180_000)
        idle(page)
        (chain_set,) = ws.list_chain_sets(home)
        chains = ws.load_chain_set(home, chain_set["id"])
        legal = [t.id for t in ws.load_task_set(home, "legal", split="train")[:2]]
        assert sorted({c["task_id"] for c in chains}) == sorted(legal)            # the chosen tasks
        judged = [c.id for c in ws.load_rubric_version(home, "science-explainer").criteria if c.is_judged]
        assert all(c["scores"][j] == 1.0 for c in chains for j in judged)      # scored by the judge
        assert endpoint.requests and endpoint.headers[0].get("Authorization") == "Bearer sk-test"
        assert ws.suggested_task_set(home, "science-explainer") == "legal"

        # -- a long preview, cancelled
        number(page, "Tasks (first N of the train split)", 40)
        number(page, "Samples per task", 16)
        number(page, "Max new tokens", 512)
        page.get_by_role("button", name="Sample chains").click()
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text("Sampling cancelled: nothing was saved.").wait_for(timeout=180_000)
        assert len(ws.list_chain_sets(home)) == 1

        # -- import a CSV task set
        csv_file = tmp_path / "support.csv"
        csv_file.write_text("id,prompt,reference\nq1,My parcel is late. What now?,Track it\n"
                            "q2,The lid cracked. Can I get a refund?,Yes\n", encoding="utf-8")
        go(page, "Rubrics")
        page.get_by_text("Import a data set: HealthBench, RaR, CSV, Parquet or TRL").click()
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Data set file")
        uploader.locator('input[type="file"]').set_input_files(str(csv_file))
        expect(uploader.get_by_text("support.csv")).to_be_visible()
        page.get_by_role("button", name="Import data set").click()
        page.get_by_text(re.compile(r"Imported 2 tasks as task set support")).wait_for()
        assert [t.id for t in ws.load_task_set(home, "support")] == ["q1", "q2"]
