"""TRL's data set formats, in and out (https://huggingface.co/docs/trl/dataset_formats).

In (`read_trl`), from JSONL, Parquet or a `save_to_disk` folder, one kind per row, any of:

    prompt-only          {"prompt": "…"}  or  {"prompt": [{"role": "user", "content": "…"}]}
    prompt-completion    {"prompt": …, "completion": …}
    conversational       {"messages": [{"role": "user", …}, {"role": "assistant", …}]}
    SDFT                 {"prompt": …, "privileged_context": "…"}   (trl.experimental.sdft)

The prompt becomes the task's (a conversation through `formats.chat`); completions are answers,
not tasks, so rows with the same task give one task. The task id is the row's `task_id` (or
`id`, `prompt_id`) column, else a hash of the prompt; `reference`, `split`, `criteria`,
`criteria_mode` and `examples` columns are read where present (rcsd's exports write them). A
`privileged_context` is kept on the task when the row carries no criteria of its own.

Out (`trl_rows`, `sdft_rows`), from chains:

    trl-prompt-completion   {"prompt": str, "completion": str, …}
    trl-conversational      {"messages": [prompt messages…, {"role": "assistant", "content": chain}], …}
    sdft                    {"prompt": [messages], "privileged_context": rendered rubric, …}, one row per task

Every row also carries `task_id` (and `id`, the chain's, for chain rows), the task's `reference`
and `split`, its criteria when it has its own — written as the full list it is scored with
(`rubric_for_task`) in `replace` mode, so a row stands alone — and, given scores, `total` and
`scores`. TRL's trainers read only their own columns. The privileged context is the task's
rubric rendered exactly as rcsd's teacher reads it (`contracts.rubric_text.render_rubric`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.rubric_text import render_rubric
from rcsd_core.contracts.tasks import Task, rubric_for_task
from rcsd_core.formats.chat import check_messages, prompt_from_messages, task_messages
from rcsd_core.formats.ids import task_id_for
from rcsd_core.formats.records import ImportResult, criterion_record, make_task, minimal_rubric
from rcsd_core.formats.tables import Where, json_value, read_rows, text_value

ID_COLUMNS = ("task_id", "id", "prompt_id")


# ---------------------------------------------------------------------------- in

def read_trl(path: str | Path) -> ImportResult:
    tasks: dict[str, Task] = {}
    first_at: dict[str, Where] = {}
    for where, row in read_rows(path, kinds=("jsonl", "parquet", "dataset")):
        task = task_from_trl_row(row, where)
        if task.id in tasks:
            if tasks[task.id].prompt != task.prompt:
                first = first_at[task.id]
                at = f"line {first.line}" if first.line is not None else f"row {first.row}"
                raise where.error(f"task {task.id!r} has another prompt than at {at}", field="prompt")
            continue
        tasks[task.id] = task
        first_at[task.id] = where
    if not tasks:
        raise Where(str(path)).error("no rows in the file")
    per_task = all(t.criteria and t.criteria_mode == "replace" for t in tasks.values())
    return ImportResult(tasks=list(tasks.values()),
                        rubric=minimal_rubric(f"trl-{Path(path).stem}", "a TRL data set", per_task=per_task))


def task_from_trl_row(row: dict, where: Where) -> Task:
    if row.get("messages") is not None:
        messages = check_messages(json_value(row["messages"], where, "messages"), where, "messages")
        last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        prompt_part = messages[:last_assistant] if last_assistant is not None else messages
        if not prompt_part:
            raise where.error("no message before the assistant's answer", field="messages")
        prompt, kept = prompt_from_messages(prompt_part, where, "messages")
    elif row.get("prompt") is not None:
        value = json_value(row["prompt"], where, "prompt")
        if isinstance(value, list):
            prompt, kept = prompt_from_messages(value, where, "prompt")
        else:
            prompt, kept = text_value(row, "prompt", where, required=True), None
    else:
        raise where.error("a TRL row needs a 'prompt' or a 'messages' column", field="prompt")
    task_id = next((text_value(row, k, where) for k in ID_COLUMNS if row.get(k) is not None), None)
    record: dict[str, Any] = {"id": task_id or task_id_for(prompt), "prompt": prompt}
    for key in ("reference", "split", "criteria_mode"):
        value = text_value(row, key, where)
        if value is not None:
            record[key] = value
    for key in ("criteria", "examples"):
        value = json_value(row.get(key), where, key)
        if value is not None:
            record[key] = value
    if kept is not None:
        record["messages"] = kept
    privileged = row.get("privileged_context")
    if privileged is not None and not record.get("criteria"):
        record["privileged_context"] = json_value(privileged, where, "privileged_context")
    return make_task(record, where)


# ---------------------------------------------------------------------------- out

def task_columns(task: Task, rubric: Rubric | None) -> dict[str, Any]:
    """The columns that carry a task: id, reference, split and (when it has its own) its criteria."""
    out: dict[str, Any] = {"task_id": task.id}
    if task.reference is not None:
        out["reference"] = task.reference
    if task.split is not None:
        out["split"] = task.split
    if task.criteria:
        criteria = task.criteria if task.criteria_mode == "replace" or rubric is None else \
            rubric_for_task(rubric, task).criteria
        out["criteria"] = [criterion_record(c) for c in criteria]
        out["criteria_mode"] = "replace"
    if task.examples:
        out["examples"] = [e.model_dump(mode="json") for e in task.examples]
    return out


def trl_rows(kind: str, chains: Iterable[dict], tasks: dict[str, Task], rubric: Rubric | None,
             scores: dict[str, dict] | None = None) -> list[dict]:
    """kind: prompt-completion | conversational. Chains whose task is unknown were refused before."""
    rows = []
    for chain in chains:
        task = tasks[chain["task_id"]]
        if kind == "prompt-completion":
            row: dict[str, Any] = {"prompt": task.prompt, "completion": chain["text"]}
        else:
            row = {"messages": [*task_messages(task), {"role": "assistant", "content": chain["text"]}]}
        row["id"] = chain["id"]
        row.update(task_columns(task, rubric))
        scored = (scores or {}).get(chain["id"]) or (chain if isinstance(chain.get("scores"), dict) else None)
        if scored is not None:       # --scores, else the chain's own (a preview's chains carry theirs)
            row["total"] = scored.get("total")
            row["scores"] = scored.get("scores")
        rows.append(row)
    return rows


def sdft_rows(tasks: Iterable[Task], rubric: Rubric | None, *, examples: int = 1) -> list[dict]:
    """One SDFT row per task: the student's prompt and the teacher's privileged context."""
    rows = []
    for task in tasks:
        task_rubric = rubric_for_task(rubric, task) if rubric is not None else _own_rubric(task)
        rows.append({"prompt": task_messages(task), "privileged_context": render_rubric(task_rubric, examples=examples),
                     **task_columns(task, rubric)})
    return rows


def _own_rubric(task: Task) -> Rubric:
    from rcsd_core.errors import InputError

    if not task.criteria or task.criteria_mode != "replace":
        raise InputError(f"task {task.id!r} has no criteria of its own (replace mode): give --rubric",
                         field="--rubric")
    return Rubric(name="task", criteria=list(task.criteria), examples=list(task.examples))
