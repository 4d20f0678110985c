"""A task's own criteria in the studio: editor rows, validation beside each row, and saving the
edited task set as a new task-set file.

    rows = task_criteria_rows(task)                                   # one row per criterion, tags joined
    criteria = criteria_from_rows(edited_rows)                        # plain data for the tasks contract
    problems = task_row_problems(task, criteria, "extend", rubric)    # [{row, criterion, field, message}]
    name = save_task_set_edit(root, "support", tasks, task.id, criteria, "extend", new_name="support-v2")
    summary = task_set_summary(tasks)                                 # how many tasks carry criteria

Validation is the tasks contract's own (`contracts.tasks.task_from_data`, then `rubric_for_task`
against the chosen shared rubric), so the messages are the ones `load_tasks` and the CLI give
(`criteria: criterion 'x'.weight: …`). A task set is never changed in place — runs and chain sets
refer to it by name — so an edit is saved under a new name, written to a staging file, validated
from it and linked into place (refused when that name exists): nothing is half-written.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from rcsd_core.contracts.names import check_name
from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task, load_tasks, rubric_for_task, task_from_data
from rcsd_core.errors import InputError
from rcsd_core.files import atomic_write_text
from rcsd_core.studio.workspace import EDITOR_COLUMNS, _blank, _split, criteria_rows, rubric_data_from_rows

TASK_EDITOR_COLUMNS = [*EDITOR_COLUMNS, "tags"]
MODES = ("extend", "replace")


def task_criteria_rows(task: Task) -> list[dict]:
    """Editor rows for a task's own criteria (the rubric editor's columns, plus tags comma-joined)."""
    if not task.criteria:
        return []
    shell = Rubric.model_construct(criteria=task.criteria)   # criteria_rows reads .criteria only
    return [{**row, "tags": ", ".join(c.tags)} for row, c in zip(criteria_rows(shell), task.criteria)]


def criteria_from_rows(rows: list[dict]) -> list[dict]:
    """Plain criterion data from editor rows (blank added rows skipped); validation comes after."""
    kept = [r for r in rows if not all(_blank(r.get(k)) for k in ("id", "title", "description", "weight"))]
    data = rubric_data_from_rows("task", "", kept)["criteria"]
    for crit, row in zip(data, kept):
        tags = _split(row.get("tags"))
        if tags:
            crit["tags"] = tags
    return data


def task_row_problems(task: Task, criteria: list[dict], mode: str, rubric: Rubric | None) -> list[dict]:
    """Problems of an edited task, each tied to its editor row where it has one."""
    base = task.model_dump(mode="json", exclude_defaults=True, exclude={"criteria", "criteria_mode"})
    problems = []
    for i, crit in enumerate(criteria):  # row by row, so a message lands beside its row
        try:
            task_from_data({**base, "criteria": [crit], "criteria_mode": mode})
        except InputError as exc:
            problems.append({"row": i + 1, "criterion": crit.get("id") or "", "field": exc.field or "",
                             "message": exc.message})
    if problems:
        return problems
    try:
        edited = edited_task(task, criteria, mode)
        if rubric is not None:
            rubric_for_task(rubric, edited)
    except InputError as exc:
        ids = [c.get("id") for c in criteria]
        cid = next((c for c in ids if c and f"'{c}'" in exc.message), "")
        problems.append({"row": ids.index(cid) + 1 if cid else None, "criterion": cid, "field": exc.field or "",
                         "message": exc.message})
    return problems


def edited_task(task: Task, criteria: list[dict], mode: str) -> Task:
    """The task with these criteria (none: a plain task again) and mode; InputError when invalid."""
    if mode not in MODES:
        raise InputError(f"criteria_mode must be one of {', '.join(MODES)}", field="criteria_mode")
    data = task.model_dump(mode="json", exclude_defaults=True, exclude={"criteria", "criteria_mode"})
    if criteria:
        data.update(criteria=criteria, criteria_mode=mode)
    return task_from_data(data, source=f"task {task.id}")


def save_task_set_edit(root: str | Path, task_set: str, tasks: list[Task], task_id: str, criteria: list[dict],
                       mode: str, *, new_name: str) -> str:
    """Save the task set with one task's criteria changed as tasks/<new_name>.jsonl; returns the name."""
    if not any(t.id == task_id for t in tasks):
        raise InputError(f"task {task_id!r} is not in task set {task_set!r}", field="task")
    return save_new_task_set(root, [edited_task(t, criteria, mode) if t.id == task_id else t for t in tasks],
                             new_name=new_name)


def save_new_task_set(root: str | Path, tasks: list[Task], *, new_name: str) -> str:
    """Write tasks as tasks/<new_name>.jsonl: a staging file, validated, linked into place (never
    replacing a set: InputError when the name is taken)."""
    new_name = new_name.strip()
    check_name(new_name, "task set")
    target = Path(root) / "tasks" / f"{new_name}.jsonl"
    if target.exists():
        raise InputError(f"a task set named {new_name!r} already exists; choose a new name", field="name")
    lines = [t.model_dump_json(exclude_defaults=True) + "\n" for t in tasks]
    staging = target.with_name(f".{new_name}.{secrets.token_hex(4)}.edit")
    atomic_write_text(staging, "".join(lines))
    try:
        load_tasks(staging)              # what is linked is exactly what was validated
        try:
            os.link(staging, target)     # exclusive: never replaces a set that appeared meanwhile
        except FileExistsError:
            raise InputError(f"a task set named {new_name!r} already exists; choose a new name",
                             field="name") from None
    finally:
        staging.unlink(missing_ok=True)
    return new_name


def task_set_summary(tasks: list[Task]) -> dict[str, Any]:
    """How many tasks carry their own criteria, in which mode, and how many criteria in all."""
    own = [t for t in tasks if t.criteria]
    return {"tasks": len(tasks), "with_criteria": len(own),
            "replace": sum(t.criteria_mode == "replace" for t in own),
            "criteria": sum(len(t.criteria) for t in own)}

