"""Contrastive drafting: the prompt shows accepted and rejected chains and the existing criteria;
proposals that repeat an existing criterion are dropped; kept (edited) proposals make a new version
with provenance; the whole path runs on the tiny model."""

from __future__ import annotations

import pytest

from rcsd_core.contracts.rubric import rubric_from_data
from rcsd_core.design.drafting import draft_contrastive, new_criteria, parse_draft
from rcsd_core.errors import InputError
from rcsd_core.modeling.contexts import contrastive_messages
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.review_loop import add_kept_criteria

RUBRIC = rubric_from_data({"name": "r", "description": "Arithmetic.", "criteria": [
    {"id": "final-answer-line", "title": "Final answer line",
     "description": "The answer ends with a line \"Answer: <result>\".", "weight": 3}]})


def test_prompt_shows_both_sides_and_the_existing_criteria():
    messages = contrastive_messages("Arithmetic.", [("2+2?", "2 + 2 = 4\nAnswer: 4")], [("3+3?", "cheese")],
                                    ["Final answer line"])
    text = messages[-1]["content"]
    assert "Accepted 1.\nQuestion: 2+2?\nAnswer: 2 + 2 = 4" in text and "Rejected 1.\nQuestion: 3+3?" in text
    assert "- Final answer line" in text


def test_near_duplicates_of_existing_criteria_are_dropped():
    reply = ("- title: Final answer line\n  description: The answer ends with a line \"Answer: <result>\".\n"
             "  weight: 3\n- title: Shows the equation\n  description: The answer writes the arithmetic used.\n"
             "  weight: 2\n")
    result = parse_draft(reply, "r")
    rows = new_criteria(result, RUBRIC)
    assert [r["id"] for r in rows] == ["shows-the-equation"] and rows[0]["keep"] is True
    assert any("near-duplicate of the rubric's 'final-answer-line'" in d["reason"] for d in result.dropped)


def test_kept_and_edited_rows_make_a_version_with_provenance(tmp_path):
    root = ws.ensure_workspace(tmp_path / "ws")
    rows = [{"keep": True, "id": "shows-equation-2", "title": "Equation", "description": "Writes 2 + 2 = 4 style "
             "arithmetic (edited).", "weight": 2.0},
            {"keep": False, "id": "dropped", "title": "x", "description": "y", "weight": 1.0}]
    before = ws.load_rubric_version(root, "grade-school-math")
    version = add_kept_criteria(root, "grade-school-math", rows, accepted=2, rejected=3)
    after = ws.load_rubric_version(root, "grade-school-math", version)
    assert [c.id for c in after.criteria] == [c.id for c in before.criteria] + ["shows-equation-2"]
    entry = ws.rubric_versions(root, "grade-school-math")[-1]
    assert entry["provenance"] == {"kind": "contrastive-draft", "criteria": ["shows-equation-2"], "accepted": 2,
                                   "rejected": 3}
    with pytest.raises(InputError, match="keep at least one"):
        add_kept_criteria(root, "grade-school-math", rows[1:], accepted=2, rejected=3)


def test_draft_contrastive_runs_on_the_tiny_model(tiny):
    model, tokenizer = tiny
    with pytest.raises(InputError, match="at least one accepted and one rejected"):
        draft_contrastive(model, tokenizer, rubric=RUBRIC, accepted=[("q", "a")], rejected=[])
    result, rows = draft_contrastive(model, tokenizer, rubric=RUBRIC, accepted=[("2+2?", "Answer: 4")],
                                     rejected=[("3+3?", "cheese")], max_new_tokens=8)
    assert isinstance(result.raw, str) and isinstance(rows, list)  # random weights: nothing usable is fine
    assert result.rubric is None or all(r["id"] != "final-answer-line" for r in rows)
