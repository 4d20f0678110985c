"""HealthBench (OpenAI, 2025) JSONL → tasks with their own criteria.

One example a line, as HealthBench publishes it (openai/simple-evals `healthbench_eval.py`):

    {"prompt": [{"role": "user", "content": "…"}, …], "prompt_id": "…",
     "rubrics": [{"criterion": "…", "points": 7, "tags": ["axis:accuracy", "level:example"]}, …],
     "example_tags": ["theme:emergency_referrals", …],
     "ideal_completions_data": {"ideal_completion": "…", "ideal_completions_group": "…", …} | null}

Each example becomes a task: `id` = `prompt_id`, `prompt` from the conversation (`formats.chat`),
`criteria` in `replace` mode — one per rubric item: `description` = the criterion text, `title`
its first sentence, `weight` = its points (negative points are pitfalls: scored 1.0 when the
described flaw is present, which is what HealthBench's "criteria_met" means for them), `tags`
kept, no check (a judge decides, as HealthBench's grader does), and an id derived from the text
(`formats.ids.criterion_ids`) — `reference` = the ideal completion where there is one, and
`example_tags` kept on the task.

Scoring: HealthBench's per-example score is Σ points of met criteria / Σ positive points, not
clipped; its aggregate is the mean over examples clipped to [0, 1]. rcsd's total is the same sum
over the same denominator when every criterion is scored, so per chain the two agree exactly
(tests/test_formats_roundtrip.py); rcsd does not clip — a mean below 0 is shown as it is.
"""

from __future__ import annotations

from pathlib import Path

from rcsd_core.contracts.tasks import Task
from rcsd_core.formats.chat import prompt_from_messages
from rcsd_core.formats.ids import criterion_ids, short_title
from rcsd_core.formats.records import ImportResult, TaskIds, rubric_name, make_task, minimal_rubric
from rcsd_core.formats.tables import Where, json_value, read_rows


def read_healthbench(path: str | Path) -> ImportResult:
    tasks = []
    ids = TaskIds()
    for where, row in read_rows(path, kinds=("jsonl", "parquet", "dataset")):
        task = task_from_healthbench(row, where)
        ids.add(task.id, where, "prompt_id")
        tasks.append(task)
    if not tasks:
        raise Where(str(path)).error("no examples in the file")
    return ImportResult(tasks=tasks, rubric=minimal_rubric(rubric_name("healthbench", path), "HealthBench",
                                                           per_task=True))


def task_from_healthbench(row: dict, where: Where) -> Task:
    prompt, messages = prompt_from_messages(json_value(row.get("prompt"), where, "prompt"), where, "prompt")
    prompt_id = row.get("prompt_id")
    if not isinstance(prompt_id, str) or not prompt_id.strip():
        raise where.error("missing or not text", field="prompt_id")
    items = json_value(row.get("rubrics"), where, "rubrics")
    if not isinstance(items, list) or not items:
        raise where.error("must be a non-empty list of {criterion, points, tags}", field="rubrics")
    texts = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise where.error("must be a {criterion, points, tags} object", field=f"rubrics[{i}]")
        text = item.get("criterion")
        if not isinstance(text, str) or not text.strip():
            raise where.error("missing or empty", field=f"rubrics[{i}].criterion")
        points = item.get("points")
        if isinstance(points, bool) or not isinstance(points, (int, float)) or points == 0:
            raise where.error(f"must be a non-zero number, got {points!r}", field=f"rubrics[{i}].points")
        tags = item.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise where.error("must be a list of strings", field=f"rubrics[{i}].tags")
        texts.append(text)
    criteria = [{"id": cid, "title": short_title(item["criterion"]), "description": item["criterion"].strip(),
                 "weight": item["points"], "tags": list(item.get("tags") or [])}
                for cid, item in zip(criterion_ids(texts), items)]
    ideal = json_value(row.get("ideal_completions_data"), where, "ideal_completions_data")
    reference = ideal.get("ideal_completion") if isinstance(ideal, dict) else None
    record = {"id": prompt_id, "prompt": prompt, "criteria": criteria, "criteria_mode": "replace"}
    if isinstance(reference, str) and reference.strip():
        record["reference"] = reference
    if messages is not None:
        record["messages"] = messages
    example_tags = row.get("example_tags")
    if isinstance(example_tags, list) and example_tags:
        record["example_tags"] = [str(t) for t in example_tags]
    return make_task(record, where)
