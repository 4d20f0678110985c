"""CLI glue for rubric design and validation: signal, guidance, draft, lint, calibrate.

    rcsd signal    --rubric R --tasks T [--model M] [--samples N] [--max-new-tokens K] [--seed S]
                   [--limit L] [--divergence D] [--run-dir D] [--judge M [--judge-url URL]] --out S.json
    rcsd guidance  --rubric R --tasks T --chains C --chain-id ID [--model M] [--run-dir D] --out MAP.html
    rcsd draft     --name N --description D --tasks T [--limit L] [--model M] --out R.yaml
    rcsd draft     --per-task --tasks T [--rubric R] [--description D] [--model M [--model-url URL]]
                   --out TASKS.jsonl                  (cli/task_drafts.py)
    rcsd lint      --rubric R [--tasks T] [--chains C] [--judge M [--judge-url URL]] [--out F.json]
    rcsd calibrate --scores S.jsonl --reviews R.jsonl [--out C.csv]

Bad input raises InputError (exit 2, one stderr line, no output file); outputs are written
atomically after the work is done.
"""

from __future__ import annotations

import argparse
import json
import sys

from rcsd_core.cli.task_drafts import add_task_draft_args, cmd_draft_per_task
from rcsd_core.cli.args import (add_judge_args, add_model_args, add_sampling_args, add_teacher_args, check_divergence, format_table,
                                judge_configured, make_judge, positive)
from rcsd_core.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("signal", help="per-criterion teacher-vs-student signal of a rubric on a model")
    p.add_argument("--rubric", required=True)
    p.add_argument("--tasks", required=True)
    add_model_args(p)
    add_teacher_args(p)
    add_sampling_args(p, samples=4)
    add_judge_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_signal)

    p = sub.add_parser("guidance", help="token-level guidance map of one chain, as HTML")
    p.add_argument("--rubric", required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--chains", required=True, help="chains JSONL (e.g. from rcsd preview)")
    p.add_argument("--chain-id", required=True)
    add_model_args(p)
    add_teacher_args(p)
    p.add_argument("--top-k", type=positive, default=5)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_guidance)

    p = sub.add_parser("draft", help="draft a rubric, or each task's own criteria (--per-task), with a model "
                                     "(the embedded 135M model drafts poorly)")
    p.add_argument("--name", help="the drafted rubric's name (needed without --per-task)")
    p.add_argument("--description", help="what the tasks are (needed without --per-task)")
    p.add_argument("--tasks", required=True, help="tasks JSONL; the first --limit give prompts and references")
    p.add_argument("--limit", type=positive, help="use only the first N tasks (default 3; all with --per-task)")
    add_model_args(p)
    add_task_draft_args(p)
    p.add_argument("--max-new-tokens", type=positive, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_draft)

    p = sub.add_parser("lint", help="find weak spots in a rubric (optionally on scored chains and a task set)")
    p.add_argument("--rubric", required=True)
    p.add_argument("--chains", help="chains JSONL with scores (rcsd preview) or scores JSONL (rcsd score); chains "
                                    "with text are also checked for rubric text they echo (leak)")
    p.add_argument("--tasks", help="tasks JSONL: their own criteria are linted too, their ideal answers / long "
                                   "references are scored against the rubric (polarity), and chains without scores "
                                   "are scored on their task's rubric")
    add_judge_args(p)
    p.add_argument("--out", help="write the findings as JSON")
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("calibrate", help="agreement of automatic verdicts with human reviews, per criterion")
    p.add_argument("--scores", required=True, help="scores JSONL (rcsd score / preview)")
    p.add_argument("--reviews", required=True, help='reviews JSONL: {"chain_id", "criterion_scores": {...}}')
    p.add_argument("--out", help="write the table as CSV")
    p.set_defaults(func=cmd_calibrate)


def run_layout(args: argparse.Namespace):
    """The teacher layout of --run-dir (None: a new round's default, with --include-reference)."""
    if not getattr(args, "run_dir", None):
        return None
    from rcsd_core.contracts.runs import load_run_config

    return load_run_config(args.run_dir).teacher_layout()


# ---------------------------------------------------------------------------- signal


def cmd_signal(args: argparse.Namespace) -> int:
    from rcsd_core.contracts.rubric import load_rubric
    from rcsd_core.contracts.tasks import check_task_rubrics, load_tasks

    # validate every input before the (slow) torch imports and model load
    rubric = load_rubric(args.rubric)
    tasks = load_tasks(args.tasks)
    check_task_rubrics(rubric, tasks, source=args.tasks)
    if args.limit:
        tasks = tasks[: args.limit]
    if not tasks:
        raise InputError("no tasks to sample", source=args.tasks)
    check_divergence(args.divergence)
    layout = run_layout(args)
    if not args.temperature >= 0:
        raise InputError(f"temperature must be >= 0, got {args.temperature}", field="temperature")
    judge = make_judge(args)

    from tqdm import tqdm

    from rcsd_core.files import atomic_write_text
    from rcsd_core.modeling.models import load_model
    from rcsd_core.design.signals import measure_signal, signal_table

    print(f"loading {args.model} ...", file=sys.stderr)
    model, tokenizer = load_model(args.model, device=args.device)
    bar = tqdm(total=3 * args.samples * len(tasks), desc="signal", unit="chain", disable=None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    report = measure_signal(rubric, tasks, model=model, tokenizer=tokenizer, model_name=args.model,
                            samples=args.samples, max_new_tokens=args.max_new_tokens, seed=args.seed,
                            divergence=args.divergence, judge=judge, progress=progress,
                            include_reference=args.include_reference, temperature=args.temperature,
                            layout=layout)
    bar.close()
    atomic_write_text(args.out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(format_table(signal_table(report)))
    div = report["divergence"]["mean"]
    print(f"mean per-token {args.divergence} on student chains: {div:.4f}" if div is not None else
          "no student chain had tokens; divergence not measured")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- guidance


def cmd_guidance(args: argparse.Namespace) -> int:
    check_divergence(args.divergence)  # before the files are read and the model is loaded
    from rcsd_core.files import atomic_write_text, iter_jsonl
    from rcsd_core.design.guidance import guidance_map
    from rcsd_core.modeling.models import load_model
    from rcsd_core.contracts.rubric import load_rubric
    from rcsd_core.contracts.tasks import check_task_rubrics, load_tasks

    rubric = load_rubric(args.rubric)
    task_list = load_tasks(args.tasks)
    check_task_rubrics(rubric, task_list, source=args.tasks)
    tasks = {t.id: t for t in task_list}
    chain = next((c for _, c in iter_jsonl(args.chains) if c.get("id") == args.chain_id), None)
    if chain is None:
        raise InputError(f"no chain with id {args.chain_id!r}", source=args.chains, field="id")
    if chain.get("task_id") not in tasks:
        raise InputError(f"chain {args.chain_id!r} names task {chain.get('task_id')!r}, not in the tasks file",
                         source=args.chains, field="task_id")
    layout = run_layout(args)
    model, tokenizer = load_model(args.model, device=args.device)
    gmap = guidance_map(model, tokenizer, rubric, tasks[chain["task_id"]], chain["text"], divergence=args.divergence,
                        top_k=args.top_k, include_reference=args.include_reference, layout=layout,
                        finished=bool(chain.get("finished")))
    atomic_write_text(args.out, "<!doctype html><meta charset=\"utf-8\">" + gmap.to_html() + "\n")
    for row in gmap.strongest(5):
        top = ", ".join(f"{t!r} {p:.2f}" for t, p in row["teacher_top"][:3])
        print(f"#{row['position']:>4} {row['text']!r:<16} {row['divergence']:.3f}  teacher prefers {top}")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- draft


def cmd_draft(args: argparse.Namespace) -> int:
    if args.per_task:
        return cmd_draft_per_task(args)
    for option in ("name", "description"):
        if not getattr(args, option):
            raise InputError("is needed to draft a rubric (or give --per-task)", field=f"--{option}")
    from rcsd_core.design.drafting import EMBEDDED_WARNING, draft_rubric
    from rcsd_core.modeling.models import DEFAULT_MODEL, load_model
    from rcsd_core.contracts.rubric import dump_rubric, save_rubric
    from rcsd_core.contracts.tasks import load_tasks

    tasks = load_tasks(args.tasks)[: args.limit or 3]
    if args.model == DEFAULT_MODEL:
        print(EMBEDDED_WARNING, file=sys.stderr)
    model, tokenizer = load_model(args.model, device=args.device)
    result = draft_rubric(model, tokenizer, description=args.description, prompts=[t.prompt for t in tasks],
                          references=[t.reference for t in tasks], name=args.name,
                          max_new_tokens=args.max_new_tokens, seed=args.seed)
    for item in result.dropped:
        print(f"dropped: {item['reason']}: {item.get('title') or item.get('item')!r}", file=sys.stderr)
    if result.rubric is None:
        print("the model's draft could not be used:", file=sys.stderr)
        for error in result.errors:
            print(f"  {error}", file=sys.stderr)
        print("--- raw model output ---", file=sys.stderr)
        print(result.raw, file=sys.stderr)
        return 1
    save_rubric(result.rubric, args.out)
    print(dump_rubric(result.rubric))
    print(f"wrote a draft with {len(result.rubric.criteria)} criteria to {args.out}; edit it before use",
          file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- lint


def cmd_lint(args: argparse.Namespace) -> int:
    from rcsd_core.files import atomic_write_text, iter_jsonl
    from rcsd_core.design.lint import findings_table, lint_rubric
    from rcsd_core.contracts.rubric import load_rubric
    from rcsd_core.scoring.scores import score_chain
    from rcsd_core.contracts.tasks import check_task_rubrics, load_tasks

    rubric = load_rubric(args.rubric)
    judge = None
    chains = None
    tasks = load_tasks(args.tasks) if args.tasks else []
    check_task_rubrics(rubric, tasks, source=args.tasks or "<tasks>")
    by_id = {t.id: t for t in tasks}
    if args.chains:
        chains = []
        references = {t.id: t.reference for t in tasks}
        prompts = {t.id: t.prompt for t in tasks}
        for line, chain in iter_jsonl(args.chains):
            if isinstance(chain.get("scores"), dict):
                chains.append(chain)
                continue
            if not isinstance(chain.get("text"), str) or not isinstance(chain.get("id"), str):
                raise InputError("each line needs 'scores', or 'id' and 'text' to be scored", source=args.chains,
                                 line=line, field="scores")
            if judge is None and judge_configured(args):
                judge = make_judge(args)
            scored = score_chain(rubric, chain, task_references=references, task_prompts=prompts,
                                 judge=judge, tasks=by_id)
            chains.append({**chain, **scored.to_record()})  # the text stays: the leak rule reads it
    if tasks and judge is None and judge_configured(args):
        judge = make_judge(args)
    findings = lint_rubric(rubric, chains, judge_configured=judge_configured(args), judge=judge, tasks=tasks)
    if args.out:
        atomic_write_text(args.out, json.dumps([f.to_record() for f in findings], indent=2) + "\n")
    if findings:
        print(findings_table(findings).to_string(index=False))
    else:
        print("no findings")
    return 1 if any(f.severity == "error" for f in findings) else 0


# ---------------------------------------------------------------------------- calibrate


def cmd_calibrate(args: argparse.Namespace) -> int:
    from rcsd_core.scoring.calibration import calibrate, pairs_from_files
    from rcsd_core.files import atomic_write_text

    pairs, unmatched = pairs_from_files(args.scores, args.reviews)
    table = calibrate(pairs)
    if args.out:
        atomic_write_text(args.out, table.to_csv(index=False))
    print(format_table(table) if len(table) else "no reviewed criterion matched a scored chain")
    if unmatched:
        print(f"{unmatched} reviewed chain(s) have no automatic scores and were skipped", file=sys.stderr)
    return 0
