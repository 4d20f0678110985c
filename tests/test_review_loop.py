"""Verdicts reach the next rubric version: a promoted accepted chain is a worked example the
teacher sees (in the context ids built by modeling.contexts), with its provenance in the history;
"rubric needs work" items are answered by a saved version and leave the open list."""

from __future__ import annotations

import pytest

from rcsd_core.contracts.config import TeacherLayout
from rcsd_core.contracts.tasks import Task
from rcsd_core.errors import InputError
from rcsd_core.modeling.contexts import teacher_messages, teacher_prompt_ids
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.review_loop import needs_work_items, promote_example, save_answering
from rcsd_core.studio.store import ReviewStore

CHAIN_TEXT = "Kofi has 7 + 5 = 12 marbles.\nAnswer: 12"


@pytest.fixture()
def setup(tmp_path):
    root = ws.ensure_workspace(tmp_path / "ws")
    store = ReviewStore(ws.store_path(root))
    version = ws.current_version(root, "grade-school-math")
    chain = {"id": "set1/t9:student:0", "task_id": "t9", "prompt": "Kofi has 7 marbles and finds 5. How many now?",
             "text": CHAIN_TEXT, "scores": {"final-answer-line": 1.0, "concise": 0.0}}
    flag = store.add_flag(chain, rubric_name="grade-school-math", rubric_version=version, reason="exemplary",
                          flagged_by="ana")
    return root, store, flag, version


def test_promoted_chain_is_in_the_next_versions_teacher_context(setup, tokenizer):
    root, store, flag, before = setup
    with pytest.raises(InputError, match="latest decision is accept"):
        promote_example(root, store, flag, promoted_by="ana")  # not reviewed yet
    review = store.add_review(flag, reviewer="ben", decision="accept", verdicts={"final-answer-line": 1.0})
    old = ws.load_rubric_version(root, "grade-school-math", before)
    task = Task(id="x", prompt="Ada has 3 pens and buys 4. How many?", reference="7")
    old_ids = teacher_prompt_ids(tokenizer, task, old, TeacherLayout())
    assert CHAIN_TEXT not in tokenizer.decode(old_ids)

    version = promote_example(root, store, flag, promoted_by="ana")
    assert version != before and ws.current_version(root, "grade-school-math") == version
    new = ws.load_rubric_version(root, "grade-school-math", version)
    assert new.examples[0].answer == CHAIN_TEXT and len(new.examples) == len(old.examples) + 1
    # the teacher sees it as the first worked example turn pair, in the ids the round uses
    messages = teacher_messages(task.prompt, new, reference=task.reference)
    assert {"role": "assistant", "content": CHAIN_TEXT} in messages
    text = tokenizer.decode(teacher_prompt_ids(tokenizer, task, new, TeacherLayout()))
    assert CHAIN_TEXT in text and "Kofi has 7 marbles and finds 5" in text
    entry = ws.rubric_versions(root, "grade-school-math")[-1]
    assert entry["version"] == version and entry["parent"] == before
    assert entry["provenance"] == {"kind": "promoted-example", "chain_id": "set1/t9:student:0", "flag_id": flag,
                                   "review_id": review, "reviewer": "ben", "promoted_by": "ana",
                                   "reviewed_version": before}
    assert f"review #{review}" in entry["note"]
    with pytest.raises(InputError, match="already a worked example"):
        promote_example(root, store, flag, promoted_by="ana")


def test_a_rejected_chain_cannot_be_promoted(setup):
    root, store, flag, _ = setup
    store.add_review(flag, reviewer="ben", decision="accept")
    store.add_review(flag, reviewer="cy", decision="reject")
    with pytest.raises(InputError, match="it is reject"):
        promote_example(root, store, flag, promoted_by="ana")


def test_needs_work_items_are_answered_by_a_saved_version(setup):
    root, store, flag, _ = setup
    review = store.add_review(flag, reviewer="ben", decision="rubric-needs-work", note="concise is too strict",
                              verdicts={"final-answer-line": 1.0, "concise": 0.0})
    items = needs_work_items(root, store, "grade-school-math")
    assert [(i["review_id"], i["criterion"], i["chain_id"]) for i in items] == [(review, "concise", "set1/t9:student:0")]
    rubric = ws.load_rubric_version(root, "grade-school-math")
    data = rubric.model_dump(mode="json")
    data["criteria"][0]["description"] += " Plain words."
    from rcsd_core.contracts.rubric import rubric_from_data
    version = save_answering(root, rubric_from_data(data), [review], note="clearer wording")
    entry = ws.rubric_versions(root, "grade-school-math")[-1]
    assert entry["version"] == version and entry["provenance"] == {"kind": "answers-reviews",
                                                                   "answers_reviews": [review]}
    assert entry["note"] == f"clearer wording; answers review #{review}"
    assert needs_work_items(root, store, "grade-school-math") == []


def test_example_warnings_name_the_failed_checks(setup):
    from rcsd_core.studio.review_loop import example_warnings

    root, store, flag, _ = setup
    rubric = ws.load_rubric_version(root, "grade-school-math")
    chain = {"scores": {"final-answer-line": 0.0, "correct-answer": 1.0, "concise": None, "restates-rubric": 1.0}}
    assert example_warnings(chain, rubric) == ["final-answer-line", "restates-rubric"]  # a pitfall found too
    assert example_warnings({"scores": {"final-answer-line": 1.0, "restates-rubric": 0.0}}, rubric) == []
