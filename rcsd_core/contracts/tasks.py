"""Tasks: the prompts a rubric is tried on, loaded from JSONL (DESIGN §2).

One object a line: {"id": str, "prompt": str, "reference": str?, "split": "train"|"eval"?}.
`load_tasks(path)` names the file, line and field of any bad record and refuses duplicate ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rcsd_core.errors import InputError
from rcsd_core.files import iter_jsonl


class Task(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    reference: str | None = None
    split: Literal["train", "eval"] | None = None


def load_tasks(path: str | Path, *, split: str | None = None) -> list[Task]:
    """Load tasks from JSONL, optionally keeping one split (tasks without a split count as train)."""
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        if isinstance(obj.get("reference"), (int, float)) and not isinstance(obj.get("reference"), bool):
            obj["reference"] = str(obj["reference"])  # a bare number is a common way to write one
        try:
            task = Task.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or None
            raise InputError(err["msg"], source=path, line=line, field=field) from None
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
