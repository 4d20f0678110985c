"""A cpu-demo-sized round on per-task rubrics, tiny random model: tasks carry their own criteria in
both modes; every method trains, its metrics carry the groups, its evaluation scores each task on
its own rubric.

    PYTHONPATH=$PWD python -m pytest -q tests/test_task_rubric_round.py
"""

from __future__ import annotations

import json

import pytest

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import preset_config
from rcsd_core.contracts.rubric import load_rubric
from rcsd_core.contracts.tasks import load_tasks, rubric_for_task
from rcsd_core.errors import InputError
from rcsd_core.evaluation.before_after import evaluate_run
from rcsd_core.training.round import train_round

SHARED = ["final-answer-line", "correct-answer", "shows-equation", "concise", "restates-rubric"]
EXTEND = [{"id": "names-the-unit", "description": "Names the unit counted (cards, buttons, ...).", "weight": 3,
           "tags": ["axis:completeness"], "check": {"type": "regex", "pattern": "(?i)cards|buttons|apples"}}]
REPLACE = [{"id": "answer-given", "description": "Ends with an Answer line.", "weight": 5, "tags": ["axis:format"],
            "check": {"type": "regex", "pattern": "(?m)^Answer:"}},
           {"id": "rambles", "description": "Writes more than 40 words.", "weight": -1,
            "check": {"type": "min_words", "limit": 40}}]


def per_task_file(tmp_path, samples_dir) -> str:
    """The arithmetic sample set, 4 train + 3 eval tasks; every other one with criteria, alternating modes."""
    lines = (samples_dir / "arithmetic.tasks.jsonl").read_text().splitlines()
    train = [json.loads(x) for x in lines if '"train"' in x][:4]
    evals = [json.loads(x) for x in lines if '"eval"' in x][:3]
    for i, task in enumerate(train + evals):
        if i % 3 == 0:
            task["criteria"] = EXTEND
        elif i % 3 == 1:
            task.update(criteria=REPLACE, criteria_mode="replace")
    path = tmp_path / "per-task.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in train + evals), encoding="utf-8")
    return str(path)


def demo_config(tasks: str, method: str):
    # the cpu-demo preset, sized down to a tiny random model and three steps
    return preset_config("cpu-demo", model="tiny-random", tasks=tasks, method=method, steps=3, prompts_per_step=2,
                         samples_per_prompt=2, max_new_tokens=8, eval_every=3, eval_tasks=3, eval_samples=1,
                         checkpoint_every=0, threads=1, lora_rank=4, lora_alpha=8)


@pytest.mark.parametrize("method", ["rcsd", "opsd", "rejection_sft"])
def test_a_round_on_per_task_rubrics_logs_groups_and_scores_each_task_on_its_own(tmp_path, samples_dir, method):
    tasks_path = per_task_file(tmp_path, samples_dir)
    run_dir = runs.create_run(demo_config(tasks_path, method), tmp_path / "runs", run_id=method)
    result = train_round(run_dir)
    assert result["status"] == "done" and result["step"] == 3

    metrics = runs.read_metrics(run_dir)
    train_rows = metrics[metrics.step > 0]
    assert train_rows["train/loss"].notna().all()
    # shared criteria by id; the tasks' own only by group, never one key per task criterion
    assert not any(c.endswith(("names-the-unit", "answer-given", "rambles")) for c in metrics.columns)
    groups = {c for c in metrics.columns if c.startswith("group/")}
    eval_groups = {c for c in metrics.columns if c.startswith("eval/group/")}
    assert groups and groups <= {"group/weight:essential", "group/weight:important", "group/weight:pitfall",
                                 "group/tag:axis:completeness", "group/tag:axis:format"}
    assert eval_groups == {"eval/group/weight:essential", "eval/group/weight:important", "eval/group/weight:pitfall",
                           "eval/group/tag:axis:completeness", "eval/group/tag:axis:format"}
    assert metrics.loc[metrics.step.isin([0, 3]), "eval/group/weight:essential"].notna().all()

    # every chain of the round was scored on its own task's rubric
    rubric = load_rubric(samples_dir / "arithmetic.yaml")
    tasks = {t.id: t for t in load_tasks(tasks_path)}
    for chain in runs.read_samples(run_dir):
        task = tasks[chain["task_id"]]
        assert list(chain["scores"]) == [c.id for c in rubric_for_task(rubric, task).criteria], chain["task_id"]
    if method != "rcsd":
        return

    # before/after: each prompt on its own rubric, the tasks' own criteria as group rows
    evaluation = evaluate_run(run_dir, samples=1)
    rows = {r["criterion"]: r for r in evaluation["criteria"]}
    assert set(rows) == {*SHARED, "equations-true", "weight:essential", "weight:important", "weight:pitfall",
                         "tag:axis:completeness", "tag:axis:format"}
    assert rows["weight:important"]["prompts"] == 1 and rows["weight:pitfall"]["prompts"] == 1
    assert rows["final-answer-line"]["prompts"] == 2     # the replace-mode eval task has no shared criteria
    for prompt in evaluation["prompts"]:
        expected = [c.id for c in rubric_for_task(rubric, tasks[prompt["task_id"]]).criteria]
        assert [list(s) for s in prompt["before_scores"] + prompt["after_scores"]] == [expected] * 2


def test_a_round_refuses_a_task_criterion_clashing_with_the_rubric(tmp_path, samples_dir):
    path = tmp_path / "clash.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "1+1?", "reference": "2", "criteria": [
        {"id": "concise", "description": "Short.", "weight": 1, "check": {"type": "max_words", "limit": 9}}]}) + "\n")
    with pytest.raises(InputError) as info:
        runs.create_run(demo_config(str(path), "rcsd"), tmp_path / "runs", run_id="x")
    assert "criterion 'concise' has the id of a shared rubric criterion" in info.value.message
    assert not (tmp_path / "runs" / "x").exists()
