"""Preview: chains in student and teacher context, scored, as records of the chains contract."""

from __future__ import annotations

import pytest

from rcsd_core.modeling.contexts import teacher_messages
from rcsd_core.contracts.config import TeacherLayout
from rcsd_core.design.preview import contexts_for, preview_chains
from rcsd_core.modeling.contexts import prompt_ids

pytestmark = pytest.mark.usefixtures("one_thread")


def test_contexts_for():
    assert contexts_for("both") == ["student", "teacher"]
    assert contexts_for("teacher") == ["teacher"]
    with pytest.raises(ValueError, match="student, teacher or both"):
        contexts_for("judge")


def test_teacher_context_carries_the_rubric(tiny, arith_rubric, arith_tasks):
    _, tokenizer = tiny
    task = arith_tasks[0]
    student = tokenizer.decode(prompt_ids(tokenizer, task, arith_rubric, "student"))
    teacher = tokenizer.decode(prompt_ids(tokenizer, task, arith_rubric, "teacher"))
    with_ref = tokenizer.decode(prompt_ids(tokenizer, task, arith_rubric, "teacher",
                                          TeacherLayout(include_reference=True)))
    assert task.prompt in student and task.prompt in teacher
    assert arith_rubric.criteria[0].description not in student
    assert arith_rubric.criteria[0].description in teacher
    assert all(e.answer.strip() in teacher for e in arith_rubric.examples)  # as earlier turns, by default
    assert f"A correct final answer to this task is: {task.reference}" in with_ref
    assert "A correct final answer" not in teacher                    # off by default (DESIGN §4)


def test_worked_examples_as_turns_or_inside_the_system_text(arith_rubric, arith_tasks):
    task = arith_tasks[0]
    turns = teacher_messages(task.prompt, arith_rubric)
    assert [m["role"] for m in turns] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "Worked example." not in turns[0]["content"]
    assert [m["content"] for m in turns[1:5]] == [arith_rubric.examples[0].prompt.strip(),
                                                   arith_rubric.examples[0].answer.strip(),
                                                   arith_rubric.examples[1].prompt.strip(),
                                                   arith_rubric.examples[1].answer.strip()]
    assert turns[-1] == {"role": "user", "content": task.prompt}
    one = teacher_messages(task.prompt, arith_rubric, examples=1)
    assert [m["role"] for m in one] == ["system", "user", "assistant", "user"]
    inside = teacher_messages(task.prompt, arith_rubric, examples=1, example_turns=False)
    assert [m["role"] for m in inside] == ["system", "user"]
    assert "Worked example." in inside[0]["content"] and arith_rubric.examples[0].answer.strip() in inside[0]["content"]
    assert teacher_messages(task.prompt, arith_rubric, examples=0)[1:] == [{"role": "user", "content": task.prompt}]


def test_preview_records(tiny, arith_rubric, arith_tasks):
    model, tokenizer = tiny
    tasks = arith_tasks[:2]
    seen = []
    records, stats = preview_chains(arith_rubric, tasks, model=model, tokenizer=tokenizer, model_name="tiny-random",
                                    samples=2, max_new_tokens=4, context="both", seed=0,
                                    progress=lambda d, t: seen.append((d, t)))
    assert len(records) == 2 * 2 * 2 and seen[-1] == (8, 8)
    assert len({r["id"] for r in records}) == 8
    assert {(r["task_id"], r["context"], r["sample"]) for r in records} == {
        (t.id, c, s) for t in tasks for c in ("student", "teacher") for s in range(2)}
    for r in records:
        assert r["id"] == f"{r['task_id']}:{r['context']}:{r['sample']}"
        assert isinstance(r["text"], str) and 1 <= r["n_tokens"] <= 4
        assert r["model"] == "tiny-random" and r["rubric"] == arith_rubric.name
        assert r["rubric_version"] == arith_rubric.version
        assert r["reference"] == next(t.reference for t in tasks if t.id == r["task_id"])
        assert set(r["scores"]) == {c.id for c in arith_rubric.criteria}
        assert r["scores"]["concise"] == 1.0                           # 4 tokens are under 60 words
        assert r["scores"]["correct-answer"] == 0.0                    # random text has no "Answer:" line
        assert r["total"] is not None
    assert stats.tokens == sum(r["n_tokens"] for r in records)


def test_preview_is_seeded(tiny, arith_rubric, arith_tasks):
    model, tokenizer = tiny
    run = lambda seed: [r["text"] for r in preview_chains(  # noqa: E731
        arith_rubric, arith_tasks[:1], model=model, tokenizer=tokenizer, model_name="tiny-random", samples=2,
        max_new_tokens=4,
        context="student", seed=seed)[0]]
    assert run(3) == run(3) != run(4)
