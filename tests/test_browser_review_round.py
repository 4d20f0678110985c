"""Two reviewers in two browser sessions review the same round at once, then the agreement view.

The studio is served by `streamlit run` (the `studio` fixture of test_browser_e2e.py) on a workspace
holding one chain set and a round that gives both chains to both reviewers. Ana and Ben each
open the Review page in their own browser context (separate sessions), see only their own queue,
and Ben does not see Ana's verdict before recording his. Then the agreement view shows the
criterion the two split on, and the disagreeing chain opens with one click.

    pytest -m browser tests/test_browser_review_round.py
"""

from __future__ import annotations

import re

import pytest
from test_browser_e2e import BROWSER_ARGS, CHROMIUM, choose, idle, studio  # noqa: F401 (the fixture)

from rcsd_core.studio import workspace as ws
from rcsd_core.studio.store import ReviewStore

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900),
              pytest.mark.skipif(not CHROMIUM.exists(), reason="system Chromium (/usr/bin/chromium) is not installed")]


def seed_round(home) -> tuple[str, int]:
    root = ws.ensure_workspace(home)
    version = ws.current_version(root, "grade-school-math")
    records = [{"id": f"t{i}:student:0", "task_id": f"t{i}", "context": "student", "prompt": f"What is {i} + 1?",
                "text": f"{i} + 1 = {i + 1}\nAnswer: {i + 1}", "scores": {"concise": 1.0}, "total": 1.0}
               for i in range(2)]
    set_id = ws.save_chain_set(root, records, {"rubric": "grade-school-math", "rubric_version": version})
    store = ReviewStore(ws.store_path(root))
    chains = ws.load_chain_set(root, set_id)
    round_id = store.create_round("pair-round", chains, rubric_name="grade-school-math", rubric_version=version,
                                  reviewers=["ana", "ben"], overlap=2, created_by="lead")
    return set_id, round_id


def open_review(browser, url: str, name: str):
    context = browser.new_context(viewport={"width": 1440, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("heading", name="rcsd studio").wait_for()
    idle(page)
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Review", exact=True).click()
    page.get_by_role("heading", name="Review", exact=True).first.wait_for()
    idle(page)
    box = page.get_by_label("Your name", exact=True)
    box.fill(name)
    box.press("Enter")
    idle(page)
    page.get_by_text(re.compile(rf"{name}: 0 of 2 decided")).wait_for()
    return context, page


def decide(page, decision: str, concise: str) -> None:
    page.get_by_role("radiogroup", name="Decision").get_by_text(decision, exact=True).click()
    choose(page, "concise (auto: pass)", concise)
    page.get_by_role("button", name="Record decision").click()
    idle(page)


def test_two_reviewers_in_two_sessions_then_agreement(studio, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    set_id, round_id = seed_round(tmp_path / "ws")
    store = ReviewStore(ws.store_path(tmp_path / "ws"))
    expect.set_options(timeout=60_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS, headless=True)
        try:
            ctx_a, ana = open_review(browser, studio, "ana")
            ctx_b, ben = open_review(browser, studio, "ben")

            decide(ana, "reject", "fail")              # t0: ana fails concise
            ana.get_by_text(re.compile(r"ana: 1 of 2 decided")).wait_for()
            # ben, in his own session, has not decided t0: ana's verdict is hidden from him
            ben.reload()
            idle(ben)
            box = ben.get_by_label("Your name", exact=True)
            if box.input_value() != "ben":
                box.fill("ben")
                box.press("Enter")
                idle(ben)
            ben.get_by_text(re.compile(r"ben: 0 of 2 decided")).wait_for()
            expect(ben.get_by_text("stay hidden until you record yours")).to_be_visible()
            expect(ben.locator('[role="gridcell"]').filter(has_text="reject")).to_have_count(0)  # no verdict of ana's
            decide(ben, "accept", "pass")              # t0: ben passes concise
            ben.get_by_text(re.compile(r"ben: 1 of 2 decided")).wait_for()
            decide(ana, "accept", "pass")              # t1: both pass
            decide(ben, "accept", "pass")
            ana.get_by_text(re.compile(r"ana: 2 of 2 decided")).wait_for()
            ben.get_by_text(re.compile(r"ben: 2 of 2 decided")).wait_for()

            # nothing lost: both sessions' four decisions are in the store
            rows = store.review_rows(round_id)
            assert sorted((r["reviewer"], r["chain_id"].split("/")[-1], r["decision"]) for r in rows) == [
                ("ana", "t0:student:0", "reject"), ("ana", "t1:student:0", "accept"),
                ("ben", "t0:student:0", "accept"), ("ben", "t1:student:0", "accept")]

            # the agreement view: concise split on t0, one click opens it
            ana.get_by_role("tab", name="Agreement").click()
            idle(ana)
            expect(ana.get_by_text("Agreement per criterion", exact=False)).to_be_visible()
            chain_button = ana.get_by_role("button").filter(has_text=f"{set_id}/t0:student:0")
            expect(chain_button).to_be_visible()
            chain_button.click()
            idle(ana)
            expect(ana.get_by_text(f"Chain {set_id}/t0:student:0")).to_be_visible()
            expect(ana.get_by_text("0 + 1 = 1").first).to_be_attached()
            ana.screenshot(path=str(tmp_path / "agreement.png"), full_page=True)
            ctx_a.close()
            ctx_b.close()
        finally:
            browser.close()
    assert (tmp_path / "agreement.png").stat().st_size > 10_000
