"""In a real browser: import a HealthBench-style file on the Rubrics page, then download reviewed
chains as Argilla records from the Review page (the studio served by `streamlit run`, headless
Chromium through Playwright, as tests/test_browser_e2e.py drives it).

    pytest -m browser tests/test_browser_formats.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_browser_e2e import CHROMIUM, go, idle, studio, studio_page  # noqa: F401  (studio: a fixture)

from rcsd_core.studio import workspace as ws
from rcsd_core.studio.store import ReviewStore

HB = Path(__file__).parent / "fixtures" / "formats" / "healthbench.jsonl"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="system Chromium (/usr/bin/chromium) is not installed")]


def select_by_typing(page, label: str, option: str) -> None:
    """Pick a selectbox option by typing it into the box (a click on a box with a help icon may only focus it)."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.get_by_role("combobox")
    box.click()
    box.press_sequentially(option)
    page.get_by_role("option", name=option, exact=True).click()
    idle(page)


@pytest.fixture()
def reviewed(tmp_path):
    """One rejected chain in the workspace the studio fixture serves (tmp_path/ws)."""
    home = ws.ensure_workspace(tmp_path / "ws")
    store = ReviewStore(ws.store_path(home))
    chain = {"id": "set/c1", "task_id": "hb-dose-001", "prompt": "Can I take two more now?",
             "text": "Take two more now.", "scores": {"concise": 1.0}, "total": 1.0, "context": "student"}
    flag = store.add_flag(chain, rubric_name="healthbench", rubric_version="0" * 12, reason="unsafe",
                          flagged_by="ana")
    store.add_review(flag, reviewer="ben", decision="reject", verdicts={"concise": 0.0})
    return home


def test_import_healthbench_then_download_argilla_records(reviewed, studio, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    with studio_page(studio, height=1400, accept_downloads=True) as page:

        # -- import a HealthBench-style file
        go(page, "Rubrics")
        page.get_by_text("Import a data set: HealthBench, RaR, CSV, Parquet or TRL").click()
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Data set file")
        uploader.locator('input[type="file"]').set_input_files(str(HB))
        expect(uploader.get_by_text("healthbench.jsonl")).to_be_visible()
        page.get_by_role("button", name="Import data set").click()
        idle(page)
        page.get_by_text(re.compile(r"Imported 3 tasks as task set healthbench with rubric healthbench")).wait_for()
        assert [len(t.criteria) for t in ws.load_task_set(reviewed, "healthbench")] == [4, 3, 3]

        # -- download the reviewed chain as Argilla records
        go(page, "Review")
        select_by_typing(page, "Export for", "Argilla records")
        with page.expect_download() as download:
            page.get_by_role("button", name="Download Argilla records").click()
        saved = tmp_path / "argilla.jsonl"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "reviewed-chains-argilla.jsonl"
        records = [json.loads(line) for line in saved.read_text().splitlines()]
        assert [r["id"] for r in records] == ["set/c1"]
        assert records[0]["responses"]["decision"] == [{"value": "reject", "user_id": "ben"}]
        assert records[0]["suggestions"]["concise"]["value"] == "yes"
