"""CSV and Parquet task lists → tasks: the columns of rcsd's tasks JSONL, one task a row.

    id,prompt,reference,split
    add-1,"Ann has 4 pens and gets 3 more. How many?",7,train

`id` and `prompt` are required columns (a file without one is refused naming the column and the
columns it has); `reference` and `split` are optional, an empty cell is missing. A Parquet list
may also carry `criteria` / `examples` (lists, or JSON text) and `criteria_mode`, as rcsd's
exports write them. Other columns are left out.
"""

from __future__ import annotations

from pathlib import Path

from rcsd_core.formats.records import ImportResult, TaskIds, make_task, minimal_rubric
from rcsd_core.formats.tables import Where, json_value, read_rows, text_value

REQUIRED = ("id", "prompt")
OPTIONAL = ("reference", "split", "criteria_mode")
NESTED = ("criteria", "examples")


def read_task_list(path: str | Path, *, kind: str) -> ImportResult:
    """kind: csv | parquet (the file must be of that kind)."""
    tasks = []
    ids = TaskIds()
    checked = False
    for where, row in read_rows(path, kinds=(kind,)):
        if not checked:
            missing = [c for c in REQUIRED if c not in row]
            if missing:
                raise Where(str(path)).error(f"missing column {missing[0]!r} (columns: {', '.join(map(str, row))})",
                                             field=missing[0])
            checked = True
        record = {key: text_value(row, key, where, required=True) for key in REQUIRED}
        for key in OPTIONAL:
            value = text_value(row, key, where)
            if value is not None:
                record[key] = value
        for key in NESTED:
            value = json_value(row.get(key), where, key)
            if value is not None:
                record[key] = value
        task = make_task(record, where)
        ids.add(task.id, where, "id")
        tasks.append(task)
    if not tasks:
        raise Where(str(path)).error("no rows in the file")
    return ImportResult(tasks=tasks, rubric=minimal_rubric(f"tasks-{Path(path).stem}", Path(path).name,
                                                           per_task=False))
