"""RaR ("Rubrics as Rewards", Gunjal et al. 2025) JSONL or Parquet → tasks with their own criteria.

One example a record, as the RaR-Medicine / RaR-Science data sets publish it:

    {"question": "…", "reference_answer": "…",
     "rubric": [{"title": "Identifies the stone", "weight": 5,
                 "description": "Essential Criteria: Identifies non-contrast CT as …"}, …]}

Weights follow the paper's classes: Essential 5, Important 3–4, Optional 1–2, Pitfall −1/−2
(a pitfall describes the flaw — "Pitfall Criteria: Does not mention …" — so it scores 1.0 when
the flaw is present, as rcsd's pitfalls do). The generation prompt has every description start
with its class ("Essential Criteria: …"); that label is read into a tag (`rar:essential`,
`rar:important`, `rar:optional`, `rar:pitfall`) and the description is kept as written. Where a
source writes the class instead of a number (`"weight": "Essential"`), or a rubric item is the
bare labelled string, the weight is the class's (Essential 5, Important 3, Optional 1, Pitfall −1).
Without a label the tag comes from the weight's class.

Each example becomes a task: `id` = its `id` field when it has one, else a hash of the question
(`formats.ids.task_id_for`); `prompt` = the question; `reference` = the reference answer;
criteria in `replace` mode with ids derived from title and description.
"""

from __future__ import annotations

import re
from pathlib import Path

from rcsd_core.contracts.tasks import Task
from rcsd_core.formats.ids import criterion_ids, short_title, task_id_for
from rcsd_core.formats.records import ImportResult, TaskIds, rubric_name, make_task, minimal_rubric
from rcsd_core.formats.tables import Where, json_value, read_rows, text_value

CLASS_WEIGHTS = {"essential": 5, "important": 3, "optional": 1, "pitfall": -1}
_LABEL = re.compile(r"^\s*(essential|important|optional|pitfall)(?:\s+criteria)?\s*:\s*", re.IGNORECASE)


def weight_class(weight: float) -> str:
    """RaR's class of a numeric weight: essential ≥ 5, important 3–4, optional below 3, pitfall < 0."""
    if weight < 0:
        return "pitfall"
    return "essential" if weight >= 5 else "important" if weight >= 3 else "optional"


def read_rar(path: str | Path) -> ImportResult:
    tasks = []
    ids = TaskIds()
    for where, row in read_rows(path, kinds=("jsonl", "parquet", "dataset")):
        task = task_from_rar(row, where)
        ids.add(task.id, where, "id" if row.get("id") is not None else "question")
        tasks.append(task)
    if not tasks:
        raise Where(str(path)).error("no examples in the file")
    return ImportResult(tasks=tasks, rubric=minimal_rubric(rubric_name("rar", path), "RaR", per_task=True))


def task_from_rar(row: dict, where: Where) -> Task:
    question = text_value(row, "question", where, required=True)
    reference = text_value(row, "reference_answer", where)
    items = json_value(row.get("rubric"), where, "rubric")
    if not isinstance(items, list) or not items:
        raise where.error("must be a non-empty list of {title, description, weight}", field="rubric")
    parsed = [_criterion(item, where, f"rubric[{i}]") for i, item in enumerate(items)]
    ids = criterion_ids([f"{title}\n{description}" for title, description, _, _ in parsed],
                        names=[title or _LABEL.sub("", description) for title, description, _, _ in parsed])
    criteria = [{"id": cid, "title": title or short_title(_LABEL.sub("", description)), "description": description,
                 "weight": weight, "tags": [f"rar:{label}"]}
                for cid, (title, description, weight, label) in zip(ids, parsed)]
    task_id = text_value(row, "id", where) or task_id_for(question)
    record = {"id": task_id, "prompt": question, "criteria": criteria, "criteria_mode": "replace"}
    if reference:
        record["reference"] = reference
    split = text_value(row, "split", where)
    if split:
        record["split"] = split
    return make_task(record, where)


def _criterion(item, where: Where, field: str) -> tuple[str, str, float, str]:
    """(title, description, weight, class) of one rubric item."""
    if isinstance(item, str):
        item = {"description": item}
    if not isinstance(item, dict):
        raise where.error("must be a {title, description, weight} object or a labelled string", field=field)
    description = item.get("description")
    if not isinstance(description, str) or not description.strip():
        raise where.error("missing or empty", field=f"{field}.description")
    title = item.get("title")
    if title is not None and not isinstance(title, str):
        raise where.error("must be text", field=f"{field}.title")
    match = _LABEL.match(description)
    label = match.group(1).lower() if match else None
    weight = item.get("weight")
    if isinstance(weight, str) and weight.strip().lower().removesuffix(" criteria") in CLASS_WEIGHTS:
        label = label or weight.strip().lower().removesuffix(" criteria")
        weight = CLASS_WEIGHTS[weight.strip().lower().removesuffix(" criteria")]
    elif weight is None and label is not None:
        weight = CLASS_WEIGHTS[label]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight == 0:
        raise where.error(f"must be a non-zero number or a class (Essential, Important, Optional, Pitfall), "
                          f"got {weight!r}", field=f"{field}.weight")
    if isinstance(weight, float) and weight.is_integer():
        weight = int(weight)
    return (title or "").strip(), description.strip(), weight, label or weight_class(weight)
