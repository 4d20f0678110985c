"""What an importer returns, and the two rules every importer shares.

- `make_task(obj, where)`: validate one task record with the contract's own rules
  (`contracts.tasks.task_from_data`), the error moved to the source's file and line/row, with
  the task id in front so the user finds it in a large file.
- `minimal_rubric(name, source)`: the shared rubric written when a source has none. HealthBench
  and RaR tasks replace it with their own criteria, so it is never scored for them; it keeps
  `rubric.yaml` valid and gives a CSV or TRL task list a starting point to edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcsd_core.contracts.rubric import Rubric, rubric_from_data
from rcsd_core.contracts.tasks import Task, task_from_data
from rcsd_core.errors import InputError
from rcsd_core.formats.ids import slug
from rcsd_core.formats.tables import Where


@dataclass
class ImportResult:
    tasks: list[Task]
    rubric: Rubric                           # the shared rubric: none of these sources has one, so minimal


def make_task(obj: dict[str, Any], where: Where) -> Task:
    try:
        return task_from_data(obj, source=where.source, line=where.line)
    except InputError as exc:
        raise where.error(f"task {obj.get('id')!r}: {exc.message}", field=exc.field) from None


class TaskIds:
    """Refuses a second task with an id already seen, naming where the first one was."""

    def __init__(self) -> None:
        self.seen: dict[str, Where] = {}

    def add(self, task_id: str, where: Where, field: str) -> None:
        first = self.seen.get(task_id)
        if first is not None:
            at = f"line {first.line}" if first.line is not None else f"row {first.row}"
            raise where.error(f"duplicate task id {task_id!r} (first at {at})", field=field)
        self.seen[task_id] = where


def rubric_name(fmt: str, path) -> str:
    """A rubric name for an imported source: the format, then the file's stem unless it says the same."""
    from pathlib import Path

    stem = slug(Path(path).stem, max_chars=60, words=8)
    return fmt if not stem or stem.startswith(fmt) else f"{fmt}-{stem}"


def minimal_rubric(name: str, source: str, *, per_task: bool) -> Rubric:
    description = (f"Imported from {source}. Every task carries its own criteria (criteria_mode: replace); "
                   "this shared rubric is not scored for them." if per_task else
                   f"Imported from {source}, which has no rubric: edit this one before scoring.")
    return rubric_from_data({
        "name": slug(name, max_chars=80, words=12) or "imported",
        "description": description,
        "criteria": [{"id": "answers-the-prompt", "title": "Answers the prompt",
                      "description": "The response answers what the user asked.", "weight": 1}],
    })


def criterion_record(criterion) -> dict[str, Any]:
    """A criterion as rubric YAML / task JSON write it: defaults left out, check type kept, 5 not 5.0."""
    data = criterion.model_dump(mode="json", exclude_defaults=True)
    data["weight"] = int(criterion.weight) if float(criterion.weight).is_integer() else criterion.weight
    if criterion.check is not None:
        data["check"] = {"type": criterion.check.type, **{k: v for k, v in data.get("check", {}).items() if k != "type"}}
    return data
