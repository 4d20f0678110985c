"""Task sets as the studio edits them: grid rows validated in place, a seeded split, saved as a new set."""

from __future__ import annotations

import pytest
from test_pages import by_label, frame_with, home, open_page, texts  # noqa: F401  (home is a fixture)

from rcsd_core.contracts.tasks import task_from_data
from rcsd_core.errors import InputError
from rcsd_core.studio import task_sets
from rcsd_core.studio import workspace as ws

TASKS = [task_from_data({"id": "q1", "prompt": "Late parcel?", "reference": "Track it", "criteria": [
             {"id": "offers-tracking", "description": "Offers tracking.", "weight": 3}], "source": "crm"}),
         task_from_data({"id": "q2", "prompt": "Cracked lid?", "split": "eval"})]


def test_rows_round_trip_and_keep_a_tasks_own_criteria_and_extra_fields():
    rows = task_sets.task_rows(TASKS)
    assert rows[0] == {"id": "q1", "prompt": "Late parcel?", "reference": "Track it", "split": "train",
                       "own criteria": 1}
    rows[0]["prompt"] = "My parcel is late. What now?"
    tasks, problems = task_sets.tasks_from_rows(rows, original=TASKS)
    assert problems == []
    assert tasks[0].prompt == "My parcel is late. What now?" and tasks[0].criteria[0].id == "offers-tracking"
    assert tasks[0].model_extra == {"source": "crm"} and tasks[1] == TASKS[1]


def test_problems_name_the_row_position_and_field():
    blank = {"id": None, "prompt": None, "reference": None, "split": "train", "own criteria": None}
    rows = [*task_sets.task_rows(TASKS), blank, {"id": "q3", "prompt": "", "split": "train"},
            {"id": "q1", "prompt": "Again", "split": "train"}, {"id": "q4", "prompt": "Hi", "split": "test"}]
    _, problems = task_sets.tasks_from_rows(rows, original=TASKS)
    assert [(p["row"], p["field"]) for p in problems] == [(4, "prompt"), (5, "id"), (6, "split")]
    assert problems[1]["message"] == "duplicate task id (first on row 1)"


def test_split_is_seeded_and_counts_the_share():
    many = [task_from_data({"id": f"t{i}", "prompt": f"p{i}"}) for i in range(20)]
    a = task_sets.split_tasks(many, eval_share=0.25, seed=3)
    assert task_sets.split_counts(a) == {"train": 15, "eval": 5}
    assert a == task_sets.split_tasks(many, eval_share=0.25, seed=3)
    assert a != task_sets.split_tasks(many, eval_share=0.25, seed=4)
    with pytest.raises(InputError):
        task_sets.split_tasks(many, eval_share=1.5)
    assert task_sets.free_name(["support", "support-2"], "support") == "support-3"
    assert task_sets.free_name(["support-2"], "support-2") == "support-3"


def test_task_sets_page_edits_a_prompt_and_saves_a_new_set(home):
    at = open_page("pages/tasks.py", task_set="arithmetic")
    original = ws.load_task_set(home, "arithmetic")
    assert "Valid · no changes." in texts(at)
    key = "task-grid-arithmetic"
    at.session_state[key] = {"edited_rows": {0: {"prompt": "What is 2 + 2?"}, 1: {"id": ""}}, "added_rows": [],
                             "deleted_rows": []}
    at.run()
    problems = frame_with(at, "row")
    assert list(problems["row"]) == [2] and problems["field"].iloc[0] == "id"
    at.session_state[key] = {"edited_rows": {0: {"prompt": "What is 2 + 2?"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert by_label(at.text_input, "Save as task set").value == "arithmetic-2"
    by_label(at.button, "Save as a new task set").click().run()
    assert not at.exception, [e.value for e in at.exception]
    saved = ws.load_task_set(home, "arithmetic-2")
    assert saved[0].prompt == "What is 2 + 2?" and saved[1:] == original[1:]
    assert ws.load_task_set(home, "arithmetic") == original          # the older set is unchanged
    assert by_label(at.selectbox, "Task set").value == "arithmetic-2"


def test_task_sets_page_applies_a_split_to_the_grid(home):
    at = open_page("pages/tasks.py", task_set="legal")
    by_label(at.number_input, "Eval share").set_value(0.5)
    by_label(at.button, "Apply to the grid").click().run()
    assert not at.exception, [e.value for e in at.exception]
    n = len(ws.load_task_set(home, "legal"))
    assert f"({n - round(n * 0.5)} train, {round(n * 0.5)} eval)" in texts(at)
