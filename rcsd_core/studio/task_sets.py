"""Task sets as the studio edits them: a grid of tasks (id, prompt, reference, split), validated
row by row with the tasks contract's messages, split into train/eval, and saved as a new set.

    rows = task_rows(tasks)                                   # what the grid shows
    tasks, problems = tasks_from_rows(rows, original=tasks)   # problems: [{row, task, field, message}]
    tasks = split_tasks(tasks, eval_share=0.25, seed=0)       # a seeded eval split
    name = save_new_task_set(root, tasks, new_name="support-2")   # task_criteria.save_new_task_set

A saved set is never changed in place (chain sets and runs refer to it by name, rounds freeze
their own copy), so every edit is a new set: the older one stays as it was, like a rubric's
versions. A task's own criteria, worked examples and any extra fields ride along with its id;
the grid edits the four plain fields and the Rubrics page's Task criteria tab edits the criteria.
"""

from __future__ import annotations

import random
from typing import Any

from rcsd_core.contracts.tasks import Task, task_from_data
from rcsd_core.errors import InputError
from rcsd_core.studio.task_criteria import save_new_task_set  # noqa: F401  (one writer of new sets)

GRID_COLUMNS = ["id", "prompt", "reference", "split", "own criteria"]
SPLITS = ("train", "eval")


def task_rows(tasks: list[Task]) -> list[dict]:
    """One grid row per task; `own criteria` is a read-only count."""
    return [{"id": t.id, "prompt": t.prompt, "reference": t.reference or "", "split": t.split or "train",
             "own criteria": len(t.criteria or [])} for t in tasks]


def tasks_from_rows(rows: list[dict], *, original: list[Task]) -> tuple[list[Task], list[dict]]:
    """Validated tasks from grid rows, and the problems tied to each row's position (1 = top).

    A row whose id is an original task's keeps that task's criteria, examples and extra fields.
    Untouched added rows (all blank) are skipped; anything else is validated.
    """
    by_id = {t.id: t for t in original}
    tasks, problems, seen = [], [], {}
    for position, row in enumerate(rows, start=1):
        if all(_blank(row.get(k)) for k in ("id", "prompt", "reference")):
            continue
        task_id = _text(row.get("id"))
        base = by_id[task_id].model_dump(exclude_defaults=True) if task_id in by_id else {}
        data = {**base, "id": task_id, "prompt": _text(row.get("prompt")),
                "reference": _text(row.get("reference")) or None, "split": _text(row.get("split")) or None}
        try:
            task = task_from_data(data, source="grid", line=position)
        except InputError as exc:
            problems.append({"row": position, "task": task_id, "field": exc.field or "", "message": exc.message})
            continue
        if task.id in seen:
            problems.append({"row": position, "task": task.id, "field": "id",
                             "message": f"duplicate task id (first on row {seen[task.id]})"})
            continue
        seen[task.id] = position
        tasks.append(task)
    if not tasks and not problems:
        problems.append({"row": None, "task": "", "field": "", "message": "a task set needs at least one task"})
    return tasks, problems


def split_tasks(tasks: list[Task], *, eval_share: float, seed: int = 0) -> list[Task]:
    """The same tasks with round(n × eval_share) of them, drawn with `seed`, in the eval split."""
    if not 0 <= eval_share <= 1:
        raise InputError("the eval share must be between 0 and 1", field="eval share")
    count = round(len(tasks) * eval_share)
    chosen = set(random.Random(seed).sample(range(len(tasks)), count))
    return [t.model_copy(update={"split": "eval" if i in chosen else "train"}) for i, t in enumerate(tasks)]


def split_counts(tasks: list[Task]) -> dict[str, int]:
    return {s: sum((t.split or "train") == s for t in tasks) for s in SPLITS}


def free_name(existing: list[str], base: str) -> str:
    """`base-2`, `base-3`, … : the first name not in `existing` (for a saved edit of `base`)."""
    stem = base.rsplit("-", 1)[0] if base.rsplit("-", 1)[-1].isdigit() else base
    n = 2
    while f"{stem}-{n}" in existing:
        n += 1
    return f"{stem}-{n}"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or str(value).strip() == ""


def _text(value: Any) -> str:
    return "" if _blank(value) else str(value).strip()
