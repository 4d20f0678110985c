"""Drafting per task (the paper's stage 1 as the paper runs it): a model drafts criteria for each
task of a task set, cached per task, and each task gets its own `criteria` (extend mode).

    drafter = LocalDrafter(model, tokenizer, max_new_tokens=300)        # or RemoteDrafter(url, model)
    tasks, records = draft_task_set(tasks, drafter, shared=rubric, cache="out.jsonl.drafts.jsonl")

For each task the drafter is asked `contexts.task_draft_messages` (the question, its reference,
the shared criteria it should not repeat); the reply is parsed and validated as a whole-rubric
draft is (`drafting.parse_draft`), criteria that repeat a shared one (same id, or near-duplicate
text) are dropped with the reason, and the task with its criteria must pass the tasks contract
(`contracts.tasks.task_from_data`, `rubric_for_task`). A draft that fails is recorded with its
reason and the task keeps no criteria — never an exception.

Resumable: every drafted task is appended, one flushed line, to the cache (`task_id`, `key` — a
hash of the prompt and reference —, `model`, `raw` reply, `criteria` or `error`, `dropped`,
`finished`), so the raw output is kept beside the result and a second run skips the tasks whose
key is already there. A call that got no reply (a remote endpoint down) is not cached: the next
run asks again. Tasks that already carry criteria (written by a person) are kept as they are.

CLI: `rcsd draft --per-task --tasks T [--rubric R] [--model M [--model-url URL]] --out O`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from rcsd_core.contracts.messages import Messages, encode_messages
from rcsd_core.contracts.rubric import Rubric
from rcsd_core.contracts.tasks import Task, rubric_for_task, task_from_data
from rcsd_core.design.drafting import SIMILARITY_THRESHOLD, parse_draft, similarity, slugify
from rcsd_core.errors import InputError
from rcsd_core.files import append_jsonl, iter_jsonl
from rcsd_core.modeling.contexts import task_draft_messages
from rcsd_core.scoring.remote import OpenAIJudge, RemoteUnavailable


class Drafter(Protocol):
    name: str

    def complete(self, messages: Messages) -> tuple[str, bool]:
        """(reply text, whether it finished within the token limit)."""


class LocalDrafter:
    """A loaded model drafting greedily (the embedded 135M model drafts poorly)."""

    def __init__(self, model, tokenizer, *, name: str = "local", max_new_tokens: int = 300, seed: int = 0,
                 temperature: float = 0.0):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_new_tokens, self.seed, self.temperature = max_new_tokens, seed, temperature

    def complete(self, messages: Messages) -> tuple[str, bool]:
        from rcsd_core.modeling.generation import sample_chains

        ids = encode_messages(self.tokenizer, messages)
        samples, _ = sample_chains(self.model, self.tokenizer, [ids], n=1, max_new_tokens=self.max_new_tokens,
                                   temperature=self.temperature, seed=self.seed)
        return samples[0].text, samples[0].finished


class RemoteDrafter:
    """A model behind an OpenAI-compatible endpoint, configured as the remote judge is
    (`scoring.remote`: loopback-only plain http, the key from an environment variable, retries)."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 max_new_tokens: int = 300, timeout: float = 120):
        self.client = OpenAIJudge(base_url, model, api_key_env=api_key_env, max_tokens=max_new_tokens,
                                  logprobs=False, timeout=timeout, name=f"openai:{model}")
        self.name = self.client.name

    def complete(self, messages: Messages) -> tuple[str, bool]:
        return self.client.chat(messages)


@dataclass
class DraftOutcome:
    """What happened to one task: drafted now, taken from the cache, kept (had criteria), or failed."""
    task_id: str
    status: str            # drafted | cached | kept | invalid | no-reply
    criteria: int = 0
    reason: str | None = None


def task_key(task: Task) -> str:
    """12 hex digits of the prompt and reference: a cached draft is reused only for the same task."""
    return hashlib.sha256(json.dumps([task.prompt, task.reference]).encode("utf-8")).hexdigest()[:12]


def validate_task_draft(raw: str, task: Task, shared: Rubric | None, *, finished: bool = True) -> dict:
    """A cache record's verdict on one reply: {"criteria": [...] | None, "error": str | None, "dropped": [...]}."""
    result = parse_draft(raw, name=slugify(f"task-{task.id}", max_length=80))
    dropped = [{"reason": d["reason"], "title": d.get("title") or str(d.get("item"))[:120]} for d in result.dropped]
    if result.rubric is None:
        return {"criteria": None, "error": "; ".join(result.errors) or "no usable criterion", "dropped": dropped}
    kept = []
    for c in result.rubric.criteria:
        twin = next((s for s in (shared.criteria if shared else []) if s.id == c.id or similarity(
            f"{s.title} {s.description}", f"{c.title} {c.description}") >= SIMILARITY_THRESHOLD), None)
        if twin is not None:
            dropped.append({"reason": f"repeats the shared criterion {twin.id!r}", "title": c.label})
        else:
            kept.append(c.model_dump(mode="json", exclude_defaults=True))
    if not kept:
        return {"criteria": None, "error": "every drafted criterion repeats a shared one", "dropped": dropped}
    try:
        drafted = task_from_data({**task.model_dump(mode="json", exclude_defaults=True), "criteria": kept,
                                  "criteria_mode": "extend"}, source="draft")
        if shared is not None:
            rubric_for_task(shared, drafted)
    except InputError as exc:
        return {"criteria": None, "error": str(exc), "dropped": dropped}
    error = None if finished else "the reply was cut at the token limit; the last criterion may be incomplete"
    return {"criteria": kept, "error": error, "dropped": dropped}


def read_cache(path: str | Path) -> dict[str, dict]:
    """Cached drafts by task id (the last line of a task wins); a half-written last line is skipped."""
    if not Path(path).is_file():
        return {}
    return {r["task_id"]: r for _, r in iter_jsonl(path, tolerate_partial_tail=True)
            if isinstance(r, dict) and isinstance(r.get("task_id"), str)}


def draft_task_set(tasks: list[Task], drafter: Drafter, *, cache: str | Path, shared: Rubric | None = None,
                   description: str = "", progress: Callable[[int, int], None] | None = None
                   ) -> tuple[list[Task], list[DraftOutcome]]:
    """Each task with its drafted criteria (extend mode) where the draft was usable; the outcomes."""
    cached = read_cache(cache)
    out: list[Task] = []
    outcomes: list[DraftOutcome] = []
    for i, task in enumerate(tasks):
        record = cached.get(task.id)
        if task.criteria:
            out.append(task)
            outcomes.append(DraftOutcome(task.id, "kept", len(task.criteria)))
        elif record is not None and record.get("key") == task_key(task) and isinstance(record.get("raw"), str):
            # the kept raw reply is validated again: the shared rubric may have changed since
            record = {**record, **validate_task_draft(record["raw"], task, shared,
                                                      finished=record.get("finished", True) is not False)}
            out.append(_with(task, record))
            outcomes.append(DraftOutcome(task.id, "cached", len(record["criteria"] or []), record["error"]))
        else:
            messages = task_draft_messages(task.prompt, task.reference, description=description, shared=shared)
            try:
                raw, finished = drafter.complete(messages)
            except RemoteUnavailable as exc:
                out.append(task)
                outcomes.append(DraftOutcome(task.id, "no-reply", 0, str(exc)))
            else:
                record = {"task_id": task.id, "key": task_key(task), "model": drafter.name, "raw": raw,
                          "finished": finished, **validate_task_draft(raw, task, shared, finished=finished)}
                append_jsonl(cache, record)
                out.append(_with(task, record))
                outcomes.append(DraftOutcome(task.id, "drafted" if record["criteria"] else "invalid",
                                             len(record["criteria"] or []), record["error"]))
        if progress:
            progress(i + 1, len(tasks))
    return out, outcomes


def _with(task: Task, record: dict) -> Task:
    if not record.get("criteria"):
        return task
    return task_from_data({**task.model_dump(mode="json", exclude_defaults=True), "criteria": record["criteria"],
                           "criteria_mode": "extend"}, source="draft")
