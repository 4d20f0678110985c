"""`rcsd draft --per-task`: draft each task's own criteria with a model (stage 1, per question).

    rcsd draft --per-task --tasks T [--rubric R] [--description D] [--limit L]
               [--model M [--model-url URL] [--model-key-env VAR]] [--max-new-tokens K] --out TASKS.jsonl

Writes TASKS.jsonl: every task, those with a usable draft carrying `criteria` (extend mode).
Beside it, `TASKS.jsonl.drafts.jsonl` keeps each task's raw reply and verdict; a second run skips
the tasks drafted there (resumable after an interrupt). `--model-url` makes `--model` the name of a
model behind an OpenAI-compatible endpoint, configured as `--judge-url` is (loopback http or
https; the key from `--model-key-env`). Inputs are checked before a model loads; the output is
written atomically at the end.
"""

from __future__ import annotations

import argparse
import sys

from rcsd_core.cli.args import check_out, write_out
from rcsd_core.errors import InputError


def add_task_draft_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--per-task", action="store_true", help="draft each task's own criteria; --out is a tasks JSONL")
    p.add_argument("--rubric", help="with --per-task: the shared rubric (its criteria are not repeated)")
    p.add_argument("--model-url", help="with --per-task: OpenAI-compatible base URL; --model names the remote model")
    p.add_argument("--model-key-env", default="OPENAI_API_KEY", help="environment variable holding that endpoint's key")


def cmd_draft_per_task(args: argparse.Namespace) -> int:
    from rcsd_core.contracts.rubric import load_rubric
    from rcsd_core.contracts.tasks import check_task_rubrics, load_tasks

    check_out(args.out)
    shared = load_rubric(args.rubric) if args.rubric else None
    tasks = load_tasks(args.tasks)
    if args.limit:
        tasks = tasks[: args.limit]
    if not tasks:
        raise InputError("no tasks to draft", source=args.tasks)
    if shared is not None:
        check_task_rubrics(shared, tasks, source=args.tasks)

    from tqdm import tqdm

    from rcsd_core.design.task_drafting import LocalDrafter, RemoteDrafter, draft_task_set
    from rcsd_core.files import write_jsonl

    if args.model_url:
        drafter = RemoteDrafter(args.model_url, args.model, api_key_env=args.model_key_env,
                                max_new_tokens=args.max_new_tokens)
    else:
        from rcsd_core.design.drafting import EMBEDDED_WARNING
        from rcsd_core.modeling.models import DEFAULT_MODEL, check_model, load_model

        check_model(args.model)
        if args.model == DEFAULT_MODEL:
            print(EMBEDDED_WARNING, file=sys.stderr)
        model, tokenizer = load_model(args.model, device=args.device)
        drafter = LocalDrafter(model, tokenizer, name=args.model, max_new_tokens=args.max_new_tokens,
                               seed=args.seed)
    cache = f"{args.out}.drafts.jsonl"
    bar = tqdm(total=len(tasks), desc="drafting", unit="task", disable=None, file=sys.stderr)
    drafted, outcomes = draft_task_set(tasks, drafter, cache=cache, shared=shared,
                                       description=args.description or "",
                                       progress=lambda done, total: bar.update(done - bar.n))
    bar.close()
    write_out(args.out, [t.model_dump(mode="json", exclude_defaults=True) for t in drafted], write_jsonl)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("drafted", "cached", "kept", "invalid", "no-reply")}
    for o in outcomes:
        if o.reason and o.status != "kept":
            print(f"{o.task_id}: {o.status}: {o.reason}", file=sys.stderr)
    with_criteria = sum(bool(t.criteria) for t in drafted)
    print(f"{with_criteria} of {len(drafted)} tasks have criteria · " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f"\nwrote {args.out}; raw replies in {cache}. Edit the drafts before use", file=sys.stderr)
    return 1 if counts["no-reply"] else 0
