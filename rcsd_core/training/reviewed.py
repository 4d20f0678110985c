"""Human verdicts in a round: rejected chains are never training targets, accepted ones can be.

A round config's `reviewed_chains` names the review store's JSONL export (Review page → Export, or
`ReviewStore.export_jsonl`): one row per flagged chain with its `task_id`, `text` and a `review`
block whose `history` lists every decision with its id. A chain's human decision is its latest
one over all its flags (the highest review id). A chain is known by (task id, text stripped):
a freshly sampled chain that is word for word a rejected one is rejected too.

    reviewed = load_reviewed(path)          # ReviewedChains(rejected={(task_id, text)}, accepted={task_id: [text]})
    key = chain_key(task_id, text)
    key in reviewed.rejected
    extra = accepted_samples(reviewed, tasks, tokenizer)   # SFT targets (config reviewed_use: sft)

`rejection_sft_step` leaves the rejected chains out of its choice of targets; with
`reviewed_use: sft` the accepted chains of the step's prompts are added as further targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rcsd_core.contracts.tasks import Task
from rcsd_core.errors import InputError
from rcsd_core.files import iter_jsonl


def chain_key(task_id: str, text: str) -> tuple[str, str]:
    return (task_id, text.strip())


@dataclass
class ReviewedChains:
    rejected: set[tuple[str, str]] = field(default_factory=set)
    accepted: dict[str, list[str]] = field(default_factory=dict)  # task id -> accepted texts, first-seen order


def load_reviewed(path: str | Path) -> ReviewedChains:
    """The latest human decision of each reviewed chain of an export; bad rows raise InputError."""
    latest: dict[tuple[str, str], tuple[int, str]] = {}
    for line, row in iter_jsonl(path):
        for name in ("task_id", "text"):
            if not isinstance(row.get(name), str):
                raise InputError(f"each reviewed chain needs a string {name!r}", source=path, line=line, field=name)
        review = row.get("review")
        history = review.get("history") if isinstance(review, dict) else None
        if not isinstance(history, list) or not history or not all(
                isinstance(h, dict) and isinstance(h.get("id"), int) and isinstance(h.get("decision"), str)
                for h in history):
            raise InputError("each reviewed chain needs a review.history of decisions with ids", source=path,
                             line=line, field="review.history")
        last = max(history, key=lambda h: h["id"])
        key = chain_key(row["task_id"], row["text"])
        if key not in latest or last["id"] > latest[key][0]:
            latest[key] = (last["id"], last["decision"])
    out = ReviewedChains()
    for (task_id, text), (_, decision) in latest.items():
        if decision == "reject":
            out.rejected.add((task_id, text))
        elif decision == "accept":
            out.accepted.setdefault(task_id, []).append(text)
    return out


def accepted_samples(reviewed: ReviewedChains, tasks: Sequence[Task], tokenizer, prompt_ids_of) -> list:
    """The accepted chains of these tasks as `Sample`s (student prompt, the chain's tokens + end of turn).

    `prompt_ids_of(task)` gives the student prompt ids (modeling.contexts.student_prompt_ids).
    """
    from rcsd_core.modeling.generation import Sample

    out = []
    for index, task in enumerate(tasks):
        for n, text in enumerate(reviewed.accepted.get(task.id, [])):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if tokenizer.eos_token_id is not None:
                ids = ids + [tokenizer.eos_token_id]
            out.append(Sample(prompt_index=index, sample_index=-1 - n, prompt_ids=prompt_ids_of(task),
                              completion_ids=ids, text=text, finished=True))
    return out
