"""Tasks: the prompts a rubric is tried on, loaded from JSONL (DESIGN §2).

One object a line:

    {"id": str, "prompt": str, "reference": str?, "split": "train"|"eval"?,
     "criteria": [criterion, ...]?, "criteria_mode": "extend"|"replace"?, "examples": [example, ...]?}

A task may carry its own criteria (the paper's per-question rubrics; HealthBench and RaR ship one
per prompt) with the rubric's criterion fields and rules. They extend the shared rubric (the
default) or replace its criteria (`criteria_mode: replace`); a task's worked `examples` come
before the shared ones (a teacher shown only the first few sees the task's own). `rubric_for_task(rubric, task)` is the one place that combines them: every
scorer, teacher context and report asks it for the rubric of a task.

`load_tasks(path)` names the file, line and field of any bad record (a task's criterion by its id,
as a rubric's are) and refuses duplicate ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rcsd_core.contracts.rubric import MAX_CRITERIA, Criterion, Example, Rubric
from rcsd_core.errors import InputError
from rcsd_core.files import iter_jsonl

CRITERIA_MODES = ("extend", "replace")


class Task(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    reference: str | None = None
    split: Literal["train", "eval"] | None = None
    criteria: list[Criterion] | None = Field(default=None, min_length=1, max_length=MAX_CRITERIA)
    criteria_mode: Literal["extend", "replace"] = "extend"
    examples: list[Example] = Field(default_factory=list)

    @property
    def has_own_rubric(self) -> bool:
        return bool(self.criteria) or bool(self.examples)


def load_tasks(path: str | Path, *, split: str | None = None) -> list[Task]:
    """Load tasks from JSONL, optionally keeping one split (tasks without a split count as train)."""
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        task = task_from_data(obj, source=path, line=line)
        if task.id in seen:
            raise InputError(f"duplicate task id {task.id!r} (first on line {seen[task.id]})",
                             source=path, line=line, field="id")
        seen[task.id] = line
        tasks.append(task)
    if not tasks:
        raise InputError("no tasks in file", source=path)
    if split is not None:
        tasks = [t for t in tasks if (t.split or "train") == split]
    return tasks


def task_from_data(obj: Any, *, source: str | Path = "<tasks>", line: int | None = None) -> Task:
    """Validate one task record; InputError names the field (a criterion by its id)."""
    if not isinstance(obj, dict):
        raise InputError("a task must be a JSON object", source=source, line=line)
    if isinstance(obj.get("reference"), (int, float)) and not isinstance(obj.get("reference"), bool):
        obj = {**obj, "reference": str(obj["reference"])}  # a bare number is a common way to write one
    try:
        task = Task.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            message = f"unknown check type {err['input'].get('type')!r}"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        raise InputError(message, source=source, line=line, field=_field_name(err["loc"], obj)) from None
    ids = [c.id for c in task.criteria or []]
    for i, cid in enumerate(ids):
        if cid in ids[:i]:
            raise InputError(f"duplicate criterion id {cid!r}", source=source, line=line,
                             field=f"criteria: criterion {cid!r}.id")
    return task


def rubric_for_task(rubric: Rubric, task: Task) -> Rubric:
    """The rubric a task is scored and taught with: the shared one, extended or replaced by its own.

    Returns `rubric` itself for a task without criteria or examples. A task criterion whose id is
    also a shared one (extend mode), or more than MAX_CRITERIA criteria in all, is an InputError
    naming the task.
    """
    if not task.has_own_rubric:
        return rubric
    own = list(task.criteria or [])
    if task.criteria_mode == "replace" and own:
        criteria = own
    else:
        shared = {c.id for c in rubric.criteria}
        clash = next((c.id for c in own if c.id in shared), None)
        if clash is not None:
            raise InputError(f"task {task.id!r} criterion {clash!r} has the id of a shared rubric criterion; "
                             "rename it, or set criteria_mode: replace", field="criteria")
        criteria = [*rubric.criteria, *own]
    if len(criteria) > MAX_CRITERIA:
        raise InputError(f"task {task.id!r} has {len(criteria)} criteria with the shared rubric's, "
                         f"above the {MAX_CRITERIA} limit", field="criteria")
    return Rubric(name=rubric.name, description=rubric.description, criteria=criteria,
                  examples=[*task.examples, *rubric.examples])


def check_task_rubrics(rubric: Rubric, tasks: list[Task], *, source: str | Path = "<tasks>") -> None:
    """Refuse, before any work, a task set whose own criteria cannot combine with `rubric`."""
    for task in tasks:
        try:
            rubric_for_task(rubric, task)
        except InputError as exc:
            raise InputError(exc.message, source=source, field=exc.field) from None


def criterion_ids(rubric: Rubric, tasks: list[Task]) -> list[str]:
    """Every criterion id a task set can be scored on, shared ones first, in first-seen order."""
    ids = dict.fromkeys(c.id for c in rubric.criteria)
    for task in tasks:
        for c in rubric_for_task(rubric, task).criteria:
            ids.setdefault(c.id)
    return list(ids)


def task_criteria(rubric: Rubric, tasks: list[Task]) -> dict[str, list[Criterion]]:
    """Each task's own criteria (those not shared), by task id: what the criterion groups summarise."""
    shared = {c.id for c in rubric.criteria}
    return {t.id: [c for c in t.criteria or [] if t.criteria_mode == "replace" or c.id not in shared]
            for t in tasks}


def all_criteria(rubric: Rubric, tasks: list[Task]) -> list[Criterion]:
    """The shared criteria, then the tasks' own by first-seen id (the first definition of an id kept)."""
    out = {c.id: c for c in rubric.criteria}
    for own in task_criteria(rubric, tasks).values():
        for c in own:
            out.setdefault(c.id, c)
    return list(out.values())


def _field_name(loc: tuple, obj: dict) -> str | None:
    parts = [p for p in loc if not (isinstance(p, str) and p in {"regex", "not_regex", "contains", "max_words",
                                                                  "min_words", "answer_match", "judge"})]
    if len(parts) >= 2 and parts[0] == "criteria" and isinstance(parts[1], int):
        items = obj.get("criteria") if isinstance(obj.get("criteria"), list) else []
        item = items[parts[1]] if parts[1] < len(items) else None
        cid = item.get("id") if isinstance(item, dict) else None
        label = f"criterion {cid!r}" if isinstance(cid, str) and cid else f"criteria[{parts[1]}]"
        rest = ".".join(str(p) for p in parts[2:])
        return f"criteria: {label}" + (f".{rest}" if rest else "")
    return ".".join(str(p) for p in parts) or None
