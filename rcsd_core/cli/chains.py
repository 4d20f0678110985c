"""`rcsd score` and `rcsd preview`: score chains against a rubric; sample and score the model's own.

    rcsd score   --rubric R --chains C [--tasks T] [--judge M [--judge-url URL] [--device D] [--threads N]] --out O
    rcsd preview --rubric R --tasks T [--model M] [--samples N] [--max-new-tokens K]
                 [--context student|teacher|both] [--seed S] [--limit L] [--judge M] --out C

Every input is checked before torch is imported or a model is loaded, so bad input is refused
in a second with exit 2 and one line; the output is written once the work is done.
"""

from __future__ import annotations

import argparse
import sys

from rcsd_core.cli.args import (add_judge_args, add_model_args, add_sampling_args, check_judge_args, check_out, format_table, make_judge,
                                positive, write_out)
from rcsd_core.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("score", help="score chains JSONL against a rubric")
    p.add_argument("--rubric", required=True)
    p.add_argument("--chains", required=True)
    p.add_argument("--tasks", help="tasks JSONL giving references (and any task's own criteria) by task_id")
    add_judge_args(p)
    p.add_argument("--device", default="auto", help="where a local judge runs: auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=positive, help="CPU threads for a local judge (default: the idle cores)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("preview", help="sample and score the model's own chains")
    p.add_argument("--rubric", required=True)
    p.add_argument("--tasks", required=True)
    add_model_args(p)
    add_sampling_args(p, samples=2)
    p.add_argument("--context", choices=["student", "teacher", "both"], default="both")
    add_judge_args(p)
    p.add_argument("--threads", type=positive,
                   help="CPU threads for torch (default: the cores other processes leave idle)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_preview)


def cmd_score(args: argparse.Namespace) -> int:
    from rcsd_core.contracts.chains import load_chains
    from rcsd_core.contracts.rubric import load_rubric
    from rcsd_core.contracts.tasks import check_task_rubrics, load_tasks
    from rcsd_core.files import write_jsonl

    check_out(args.out)
    check_judge_args(args)
    rubric = load_rubric(args.rubric)
    tasks = load_tasks(args.tasks) if args.tasks else []
    check_task_rubrics(rubric, tasks, source=args.tasks or "<tasks>")
    chains = load_chains(args.chains)
    from tqdm import tqdm

    from rcsd_core.scoring.scores import score_chain, summarize_scores  # pandas: imported once the input is good

    if args.judge and not args.judge_url:  # a local judge: threads as preview and signal set them
        from rcsd_core.modeling.models import resolve_device, set_cpu_threads

        set_cpu_threads(args.threads, resolve_device(args.device))
    judge = make_judge(args, device=args.device)
    references = {t.id: t.reference for t in tasks}
    prompts = {t.id: t.prompt for t in tasks}
    by_id = {t.id: t for t in tasks}
    results = [score_chain(rubric, c, task_references=references, task_prompts=prompts, judge=judge, tasks=by_id)
               for c in tqdm(chains, desc="scoring", unit="chain", disable=None, file=sys.stderr)]
    records = [{**r.to_record(), "task_id": c.get("task_id")} for r, c in zip(results, chains)]
    write_out(args.out, [r.to_record() for r in results], write_jsonl)
    print(format_table(summarize_scores(rubric, records, tasks)))
    print(f"wrote {len(results)} scores to {args.out}", file=sys.stderr)
    if getattr(judge, "all_failed", False):
        print(f"rcsd score: every one of {judge.attempts} judge calls failed (last: {judge.last_error}); judged "
              "criteria are unscored", file=sys.stderr)
        return 1
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from rcsd_core.contracts.rubric import load_rubric
    from rcsd_core.contracts.tasks import check_task_rubrics, load_tasks

    check_out(args.out)
    rubric = load_rubric(args.rubric)
    tasks = load_tasks(args.tasks)
    check_task_rubrics(rubric, tasks, source=args.tasks)

    from tqdm import tqdm

    from rcsd_core.design.preview import contexts_for, preview_chains
    from rcsd_core.files import write_jsonl
    from rcsd_core.modeling.models import check_model, load_model, resolve_device, set_cpu_threads
    from rcsd_core.scoring.scores import summarize_scores

    if args.limit:
        tasks = tasks[: args.limit]
    contexts_for(args.context)
    # every input is checked before the slow part starts, so bad input costs no model load
    resolve_device(args.device)
    check_model(args.model)
    if args.judge and not args.judge_url:
        check_model(args.judge)
    if not args.temperature >= 0:
        raise InputError(f"must be 0 (greedy) or more, got {args.temperature}", field="--temperature")
    threads = set_cpu_threads(args.threads, resolve_device(args.device))
    on = f" on {threads} CPU thread{'s' if threads > 1 else ''}" if threads else ""
    print(f"loading {args.model}{on} ...", file=sys.stderr)
    model, tokenizer = load_model(args.model, device=args.device)
    judge = make_judge(args, device=args.device)
    bar = tqdm(total=len(tasks) * args.samples * len(contexts_for(args.context)), desc="sampling", unit="chain",
               disable=None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    records, stats = preview_chains(rubric, tasks, model=model, tokenizer=tokenizer, model_name=args.model,
                                    samples=args.samples, max_new_tokens=args.max_new_tokens, context=args.context,
                                    seed=args.seed, temperature=args.temperature, judge=judge, progress=progress)
    bar.close()
    write_out(args.out, records, write_jsonl)
    for kind in contexts_for(args.context):
        print(f"\n{kind} context")
        print(format_table(summarize_scores(rubric, [r for r in records if r["context"] == kind], tasks)))
    print(f"wrote {len(records)} chains to {args.out} ({stats.tokens} tokens, {stats.tokens_per_s:.1f} tokens/s)",
          file=sys.stderr)
    return 0
