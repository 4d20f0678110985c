"""Import a source into a task folder: `DIR/tasks.jsonl` and `DIR/rubric.yaml`, all or nothing.

    result = import_source("healthbench", "healthbench.jsonl")      # InputError: file, line/row, field
    write_import("tasks/healthbench", result)

The whole source is read and every task validated before anything is written. A new folder is
built beside its final place and renamed into it; an existing folder gets both files written to
temporary names first, then renamed over the old ones. `sniff_format` guesses the format from the
file type and the first record's fields, for the studio's "detect" choice.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from rcsd_core.contracts.rubric import checked_rubric_yaml
from rcsd_core.contracts.tasks import Task
from rcsd_core.errors import InputError
from rcsd_core.files import atomic_write_text
from rcsd_core.formats.healthbench import read_healthbench
from rcsd_core.formats.rar import read_rar
from rcsd_core.formats.records import ImportResult, criterion_record
from rcsd_core.formats.tables import read_rows, source_kind
from rcsd_core.formats.tasklist import read_task_list
from rcsd_core.formats.trl import read_trl

IMPORT_FORMATS = ("healthbench", "rar", "csv", "parquet", "trl")
TASKS_FILE = "tasks.jsonl"
RUBRIC_FILE = "rubric.yaml"


def import_source(fmt: str, src: str | Path) -> ImportResult:
    if fmt == "healthbench":
        return read_healthbench(src)
    if fmt == "rar":
        return read_rar(src)
    if fmt in ("csv", "parquet"):
        return read_task_list(src, kind=fmt)
    if fmt == "trl":
        return read_trl(src)
    raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(IMPORT_FORMATS)}", field="--format")


def sniff_format(src: str | Path) -> str:
    """The import format a source most likely is, from its type and first record; InputError if none fits."""
    kind = source_kind(src)
    if kind == "csv":
        return "csv"
    first = next(iter(read_rows(src)), None)
    if first is None:
        raise InputError("no records to tell the format from", source=src)
    keys = set(first[1])
    if {"prompt", "rubrics"} <= keys:
        return "healthbench"
    if {"question", "rubric"} <= keys:
        return "rar"
    if "messages" in keys or "completion" in keys or "privileged_context" in keys:
        return "trl"
    if {"id", "prompt"} <= keys and kind == "parquet":
        return "parquet"
    if "prompt" in keys:
        return "trl"
    raise InputError(f"cannot tell the format from the fields {', '.join(sorted(map(str, keys)))}; choose one",
                     source=src, field="format")


def task_record(task: Task) -> dict:
    """A task as a tasks.jsonl line: contract fields first, defaults left out, extra fields kept."""
    record: dict = {"id": task.id, "prompt": task.prompt}
    if task.reference is not None:
        record["reference"] = task.reference
    if task.split is not None:
        record["split"] = task.split
    if task.criteria:
        record["criteria"] = [criterion_record(c) for c in task.criteria]
        if task.criteria_mode != "extend":
            record["criteria_mode"] = task.criteria_mode
    if task.examples:
        record["examples"] = [e.model_dump(mode="json") for e in task.examples]
    record.update(task.model_extra or {})
    return record


def tasks_jsonl(tasks: list[Task]) -> str:
    import json

    return "".join(json.dumps(task_record(t), ensure_ascii=False) + "\n" for t in tasks)


def write_import(out_dir: str | Path, result: ImportResult) -> tuple[Path, Path]:
    """Write tasks.jsonl and rubric.yaml into out_dir, both or neither; returns their paths."""
    out = Path(out_dir)
    tasks_text = tasks_jsonl(result.tasks)
    rubric_text = checked_rubric_yaml(result.rubric)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", source=out, field="--out")
    try:
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
            try:
                atomic_write_text(staging / TASKS_FILE, tasks_text)
                atomic_write_text(staging / RUBRIC_FILE, rubric_text)
                os.rename(staging, out)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        else:
            staged = []
            try:
                for name, text in ((TASKS_FILE, tasks_text), (RUBRIC_FILE, rubric_text)):
                    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
                    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                        f.write(text)
                        f.flush()
                        os.fsync(f.fileno())
                    staged.append((tmp, out / name))
                for tmp, final in staged:
                    os.replace(tmp, final)
            finally:
                for tmp, _ in staged:
                    Path(tmp).unlink(missing_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", source=out, field="--out") from None
    return out / TASKS_FILE, out / RUBRIC_FILE
