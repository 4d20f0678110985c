"""Per-task criteria: a task's own criteria extend or replace the shared rubric (DESIGN §2 tasks)."""

from __future__ import annotations

import hashlib
import json

import pytest

from rcsd_core.contracts.rubric import rubric_from_data
from rcsd_core.contracts.tasks import check_task_rubrics, criterion_ids, load_tasks, rubric_for_task, task_from_data
from rcsd_core.errors import InputError
from rcsd_core.modeling.contexts import teacher_messages, teacher_prompt_ids
from rcsd_core.modeling.generation import Sample
from rcsd_core.scoring.scores import score_samples

SHARED = rubric_from_data({"name": "support", "criteria": [
    {"id": "polite", "description": "Thanks the customer.", "weight": 2,
     "check": {"type": "contains", "terms": ["thank"]}}]})


def _write(tmp_path, records) -> str:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def _refund_task(**extra) -> dict:
    return {"id": "t1", "prompt": "My order arrived broken.", "criteria": [
        {"id": "offers-refund", "description": "Offers a refund.", "weight": 5, "tags": ["axis:completeness"],
         "check": {"type": "contains", "terms": ["refund"]}},
        {"id": "blames-customer", "description": "Blames the customer.", "weight": -2,
         "check": {"type": "contains", "terms": ["your fault"]}}], **extra}


def test_extend_adds_task_criteria_after_the_shared_ones(tmp_path):
    tasks = load_tasks(_write(tmp_path, [_refund_task(), {"id": "t2", "prompt": "Where is my parcel?"}]))
    combined = rubric_for_task(SHARED, tasks[0])
    assert [c.id for c in combined.criteria] == ["polite", "offers-refund", "blames-customer"]
    assert combined.criterion("offers-refund").tags == ["axis:completeness"]
    assert rubric_for_task(SHARED, tasks[1]) is SHARED
    assert criterion_ids(SHARED, tasks) == ["polite", "offers-refund", "blames-customer"]


def test_replace_keeps_only_the_task_criteria(tmp_path):
    task = load_tasks(_write(tmp_path, [_refund_task(criteria_mode="replace")]))[0]
    assert [c.id for c in rubric_for_task(SHARED, task).criteria] == ["offers-refund", "blames-customer"]


def test_bad_task_criterion_names_file_line_and_criterion(tmp_path):
    bad = _refund_task()
    bad["criteria"][1]["weight"] = 0
    path = _write(tmp_path, [{"id": "t0", "prompt": "Hi"}, bad])
    with pytest.raises(InputError) as info:
        load_tasks(path)
    assert info.value.line == 2
    assert info.value.field == "criteria: criterion 'blames-customer'.weight"
    assert "non-zero" in info.value.message


def test_unknown_check_type_and_duplicate_ids_are_refused():
    bad = _refund_task()
    bad["criteria"][0]["check"] = {"type": "vibes"}
    with pytest.raises(InputError, match="unknown check type 'vibes'"):
        task_from_data(bad)
    dup = _refund_task()
    dup["criteria"][1]["id"] = "offers-refund"
    with pytest.raises(InputError, match="duplicate criterion id 'offers-refund'"):
        task_from_data(dup)
    with pytest.raises(InputError, match="criteria_mode"):
        task_from_data(_refund_task(criteria_mode="merge"))


def test_a_task_criterion_with_a_shared_id_is_refused_in_extend_mode():
    task = task_from_data({"id": "t9", "prompt": "p", "criteria": [
        {"id": "polite", "description": "Polite.", "weight": 1}]})
    with pytest.raises(InputError, match="task 't9' criterion 'polite'"):
        check_task_rubrics(SHARED, [task], source="tasks.jsonl")
    replaced = task.model_copy(update={"criteria_mode": "replace"})
    assert rubric_for_task(SHARED, replaced).criteria[0].description == "Polite."


def test_teacher_is_shown_the_task_criteria_and_its_own_example_first(tiny):
    _, tokenizer = tiny
    task = task_from_data({**_refund_task(), "examples": [{"prompt": "Cracked mug?", "answer": "Sorry! A refund is on its way."}]})
    plain = task.model_copy(update={"criteria": None, "examples": []})
    system = teacher_messages(task.prompt, rubric_for_task(SHARED, task))[0]["content"]
    assert "Offers a refund." in system and "Blames the customer." in system
    with_own = tokenizer.decode(teacher_prompt_ids(tokenizer, task, SHARED))
    without = tokenizer.decode(teacher_prompt_ids(tokenizer, plain, SHARED))
    assert "Offers a refund." in with_own and "Offers a refund." not in without
    assert "Cracked mug?" in with_own


def test_score_samples_scores_each_task_on_its_own_rubric():
    tasks = [task_from_data(_refund_task()), task_from_data({"id": "t2", "prompt": "Where is my parcel?"})]
    samples = [Sample(0, 0, [1], [2, 3], "Thank you, a refund is coming.", True),
               Sample(1, 0, [1], [2, 3], "It is your fault.", True)]
    first, second = score_samples(SHARED, tasks, samples)
    assert first["scores"] == {"polite": 1.0, "offers-refund": 1.0, "blames-customer": 0.0}
    assert first["total"] == pytest.approx((2 + 5) / 7)
    assert second["scores"] == {"polite": 0.0}   # the pitfall belongs to t1 only
    assert second["total"] == 0.0


def test_tags_left_at_default_keep_old_versions():
    data = {"name": "x", "criteria": [{"id": "a", "description": "A.", "weight": 1}]}
    plain = rubric_from_data(data)
    tagged = rubric_from_data({"name": "x", "criteria": [{"id": "a", "description": "A.", "weight": 1, "tags": ["t"]}]})
    # the hash of the content as it was before criteria had tags (or held_out)
    canonical = json.dumps(plain.model_dump(mode="json", exclude={"criteria": {0: {"tags", "held_out"}}}),
                           sort_keys=True, separators=(",", ":"))
    assert plain.version == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert tagged.version != plain.version
