"""The Review page's rounds, agreement view and next steps, and the Rubrics editor opened from a
"rubric needs work" decision, driven with streamlit.testing.v1.AppTest on a temporary workspace."""

from __future__ import annotations


import pandas as pd
import pytest

from test_pages import by_label, frame_with, home, open_page, texts  # noqa: F401  (home is a fixture)

from rcsd_core.studio import workspace as ws
from rcsd_core.studio.store import ReviewStore




def chain_set(home, n=3) -> str:
    version = ws.current_version(home, "grade-school-math")
    records = [{"id": f"t{i}:student:0", "task_id": f"t{i}", "context": "student", "prompt": f"What is {i} + 1?",
                "text": f"{i} + 1 = {i + 1}\nAnswer: {i + 1}", "scores": {"final-answer-line": 1.0, "concise": 1.0},
                "total": 1.0} for i in range(n)]
    return ws.save_chain_set(home, records, {"rubric": "grade-school-math", "rubric_version": version})




def test_round_queue_hiding_and_agreement_view(home):
    set_id = chain_set(home)
    at = open_page("pages/review.py")
    assert "Nothing flagged yet" in texts(at)
    by_label(at.selectbox, "Chain set").set_value(set_id)
    by_label(at.text_input, "Round name").input("round-1")
    by_label(at.text_input, "Reviewers (comma-separated)").input("ana, ben, cy")
    by_label(at.number_input, "Reviewers per chain (overlap)").set_value(2)
    by_label(at.text_input, "Created by").input("lead")
    by_label(at.button, "Start round").click().run()
    assert not at.exception, [e.value for e in at.exception]
    store = ReviewStore(ws.store_path(home))
    (info,) = store.rounds()
    assert info["name"] == "round-1" and info["n_chains"] == 3 and info["overlap"] == 2

    # ana decides her first chain (t0, shared with ben): fail on concise
    by_label(at.text_input, "Your name").input("ana").run()
    assert "ana: 0 of 2 decided" in texts(at)
    assert list(frame_with(at, "status")["status"]) == ["open", "open"]
    by_label(at.radio, "Decision").set_value("reject")
    by_label(at.selectbox, "concise (auto: pass)").set_value("fail")
    by_label(at.button, "Record decision").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert list(frame_with(at, "status")["status"]) == ["reject", "open"]
    assert "opens once you have decided all your chains (1 open)" in texts(at)  # agreement waits for her

    # ben opens the same chain: ana's verdict is not shown to him
    at = open_page("pages/review.py", user="ben")
    assert list(frame_with(at, "status")["status"]) == ["open", "open"]
    page = texts(at)
    assert "stay hidden until you record yours" in page
    assert not [f for f in at.dataframe if "decision" in f.value.columns]
    by_label(at.radio, "Decision").set_value("accept")
    by_label(at.selectbox, "concise (auto: pass)").set_value("pass")
    by_label(at.button, "Record decision").click().run()
    assert "stay hidden until you record yours" in texts(at)  # his next open chain (t2, shared with cy) opened
    shared = int(store.reviewer_queue(info["id"], "ben")["flag_id"][0])
    by_label(at.selectbox, "Chain").set_value(shared).run()
    history = frame_with(at, "decision")
    assert set(history["reviewer"]) == {"ana", "ben"}  # after his own decision, both

    # everyone finishes through the store; the lead (not a reviewer) opens the agreement view
    queues = {r: store.reviewer_queue(info["id"], r) for r in ("ana", "ben", "cy")}
    for reviewer, queue in queues.items():
        for flag_id, status in zip(queue["flag_id"], queue["status"]):
            if status == "open":
                store.add_review(int(flag_id), reviewer=reviewer, decision="accept", verdicts={"concise": 1.0})
    at = open_page("pages/review.py", user="lead")
    table = frame_with(at, "krippendorff_alpha").set_index("criterion")
    # concise: t0 (0, 1), t1 (1, 1), t2 (1, 1). α: o_00 = 0, o_01 = o_10 = 1, o_11 = 4; n_0 = 1, n_1 = 5, n = 6;
    # α = 1 − 5·2/(2·1·5) = 0. Fleiss: P̄ = 2/3, p = (1/6, 5/6), P_e = 26/36; κ = (24/36 − 26/36)/(10/36) = −0.2
    assert table.loc["concise", "n_items"] == 3 and table.loc["concise", "disagreeing"] == 1
    assert table.loc["concise", "krippendorff_alpha"] == pytest.approx(0.0)
    assert table.loc["concise", "fleiss_kappa"] == pytest.approx(-0.2)
    assert "tied" in table.loc["concise", "note"]  # t0's 1–1 tie is left out of the judge figures
    by_label(at.selectbox, "Disagreeing chains of").set_value("concise").run()
    button = next(b for b in at.button if b.label.startswith(f"{set_id}/t0:student:0"))
    button.click().run()
    assert not at.exception
    assert f"Chain {set_id}/t0:student:0" in texts(at) and "0 + 1 = 1" in texts(at)


def test_promote_and_needs_work_from_the_review_page(home):
    store = ReviewStore(ws.store_path(home))
    version = ws.current_version(home, "grade-school-math")
    chain = {"id": "s/c1", "task_id": "t1", "prompt": "What is 2 + 2?", "text": "2 + 2 = 4\nAnswer: 4",
             "context": "student", "scores": {"concise": 1.0}}
    good = store.add_flag(chain, rubric_name="grade-school-math", rubric_version=version, reason="exemplary",
                          flagged_by="ana")
    store.add_review(good, reviewer="ben", decision="accept")
    at = open_page("pages/review.py", user="ben", flag_id=good)
    by_label(at.button, "Promote to worked example").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "first worked example" in texts(at)
    new = ws.load_rubric_version(home, "grade-school-math")
    assert new.examples[0].answer == "2 + 2 = 4\nAnswer: 4" and new.version != version

    bad = store.add_flag({**chain, "id": "s/c2", "text": "four, i think"}, rubric_name="grade-school-math",
                         rubric_version=new.version, reason="unclear", flagged_by="ana", criterion="concise")
    review = store.add_review(bad, reviewer="ben", decision="rubric-needs-work", note="what counts as concise?")
    at = open_page("pages/review.py", user="ben", flag_id=bad)
    by_label(at.button, "Open in the Rubrics editor").click().run()
    assert not at.exception, [e.value for e in at.exception]
    page = texts(at)
    assert f"Review #{review} says the rubric needs work on `concise`" in page and "four, i think" in page
    assert "what counts as concise?" in page
    # AppTest reruns the page it was switched to first: carry the session over to the Rubrics page
    at = open_page("pages/rubrics.py", rubric=at.session_state["rubric"], rubric_fix=at.session_state["rubric_fix"])
    assert f"Review #{review} says the rubric needs work on `concise`" in texts(at)
    desc = next(t for t in at.text_area if t.label == "Description")
    desc.set_value(desc.value + " Short answers.").run()
    assert by_label(at.multiselect, "This version answers review items").value == [review]
    by_label(at.button, "Save as new version").click().run()
    assert not at.exception, [e.value for e in at.exception]
    entry = ws.rubric_versions(home, "grade-school-math")[-1]
    assert entry["provenance"] == {"kind": "answers-reviews", "answers_reviews": [review]}
    assert ws.rubric_versions(home, "grade-school-math")[-2]["provenance"]["kind"] == "promoted-example"


def test_two_versions_side_by_side_on_the_history_tab(home):
    from rcsd_core.contracts.rubric import rubric_from_data

    set_id = chain_set(home)
    store = ReviewStore(ws.store_path(home))
    round_id = store.create_round("r", ws.load_chain_set(home, set_id), rubric_name="grade-school-math",
                                  rubric_version="x", reviewers=["ana"], overlap=1, created_by="lead")
    for flag_id in store.reviewer_queue(round_id, "ana")["flag_id"]:
        store.add_review(int(flag_id), reviewer="ana", decision="accept", verdicts={"concise": 1.0})
    old = ws.current_version(home, "grade-school-math")
    data = ws.load_rubric_version(home, "grade-school-math").model_dump(mode="json")
    data["criteria"] = [c for c in data["criteria"] if c["id"] != "restates-rubric"]
    new = ws.save_rubric_version(home, rubric_from_data(data))
    at = open_page("pages/rubrics.py", rubric="grade-school-math")
    table = frame_with(at, "pass_new").set_index("criterion")
    assert "restates-rubric" in table.index and pd.isna(table.loc["restates-rubric", "pass_new"])
    assert table.loc["final-answer-line", "pass_old"] == pytest.approx(1.0)  # every chain ends "Answer: n"
    assert table.loc["concise", "n_human"] == 3
    assert f"{old} vs {new} on the same chains" in texts(at)


def test_teach_the_judge_before_and_after(home):
    from rcsd_core.contracts.rubric import rubric_from_data

    data = ws.load_rubric_version(home, "grade-school-math").model_dump(mode="json")
    data["criteria"].append({"id": "polite", "title": "Polite", "description": "The answer is polite.", "weight": 1})
    version = ws.save_rubric_version(home, rubric_from_data(data))
    set_id = chain_set(home, n=4)
    store = ReviewStore(ws.store_path(home))
    round_id = store.create_round("judge-round", ws.load_chain_set(home, set_id), rubric_name="grade-school-math",
                                  rubric_version=version, reviewers=["ana"], overlap=1, created_by="lead")
    for i, flag_id in enumerate(store.reviewer_queue(round_id, "ana")["flag_id"]):
        store.add_review(int(flag_id), reviewer="ana", decision="accept", verdicts={"polite": float(i % 2)})
    at = open_page("pages/review.py", user="lead")
    by_label(at.text_input, "Judge model").input("tiny-random")
    by_label(at.button, "Measure the judge before and after").click().run()
    assert not at.exception, [e.value for e in at.exception]
    page = texts(at)
    assert "held-out chains" in page
    table = frame_with(at, "judge")
    assert table["judge"].iloc[0] == "before"


def test_contrastive_proposals_on_the_rubrics_page(home):
    store = ReviewStore(ws.store_path(home))
    version = ws.current_version(home, "grade-school-math")
    for i, decision in enumerate(("accept", "reject")):
        flag = store.add_flag({"id": f"s/c{i}", "prompt": "What is 2 + 2?", "text": ["2 + 2 = 4\nAnswer: 4", "fish"][i]},
                              rubric_name="grade-school-math", rubric_version=version, reason="r", flagged_by="ana")
        store.add_review(flag, reviewer="ben", decision=decision)
    at = open_page("pages/rubrics.py", rubric="grade-school-math")
    by_label(at.text_input, "Model for proposals").set_value("tiny-random")
    by_label(at.button, "Propose criteria").click().run()
    assert not at.exception, [e.value for e in at.exception]
    # the random tiny model proposes nothing usable: said, with its raw reply
    assert "No usable new criterion came out" in texts(at) or frame_with(at, "keep") is not None
