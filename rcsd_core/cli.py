"""The `rcsd` command line: the studio's work, headless.

    rcsd score   --rubric R --chains C [--tasks T] [--judge MODEL] --out O
    rcsd preview --rubric R --tasks T [--model M] [--samples N] [--max-new-tokens K]
                 [--context student|teacher|both] [--seed S] --out C
    rcsd app     [--port P] [--address A]

and, registered from rcsd_core/commands/: `train`, `status`, `eval` (commands/train.py) and
`signal`, `guidance`, `draft`, `lint`, `calibrate` (commands/design.py).

Bad input exits with code 2 and one line on stderr naming the file, line and field; no output
file is written then. Each subcommand is a small function that parses nothing itself beyond its
namespace and calls into the package.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from rcsd_core.errors import InputError

# ---------------------------------------------------------------------------- score


def cmd_score(args: argparse.Namespace) -> int:
    from rcsd_core.files import iter_jsonl, write_jsonl
    from rcsd_core.rubric import load_rubric
    from rcsd_core.tasks import load_tasks

    _check_out(args.out)
    rubric = load_rubric(args.rubric)
    tasks = load_tasks(args.tasks) if args.tasks else []
    references = {t.id: t.reference for t in tasks}
    prompts = {t.id: t.prompt for t in tasks}
    chains = []
    seen: dict[str, int] = {}
    for line, chain in iter_jsonl(args.chains):
        for key in ("id", "text"):
            if not isinstance(chain.get(key), str):
                raise InputError(f"missing or non-string {key!r}", source=args.chains, line=line, field=key)
        if chain["id"] in seen:
            raise InputError(f"duplicate chain id {chain['id']!r} (first on line {seen[chain['id']]})",
                             source=args.chains, line=line, field="id")
        seen[chain["id"]] = line
        if "reference" in chain and chain["reference"] is not None and not isinstance(chain["reference"], str):
            chain["reference"] = str(chain["reference"])
        chains.append(chain)
    from tqdm import tqdm

    from rcsd_core.scoring import score_chain, summarize_scores  # pandas: imported once the input is good

    judge = _load_judge(args.judge) if args.judge else None
    results = [score_chain(rubric, c, task_references=references, task_prompts=prompts, judge=judge)
               for c in tqdm(chains, desc="scoring", unit="chain", disable=None, file=sys.stderr)]
    _write_out(args.out, [r.to_record() for r in results], write_jsonl)
    print(_table(summarize_scores(rubric, results)))
    print(f"wrote {len(results)} scores to {args.out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- preview


def cmd_preview(args: argparse.Namespace) -> int:
    from rcsd_core.rubric import load_rubric
    from rcsd_core.tasks import load_tasks

    # input files are checked before torch is imported: bad input is refused in a second
    _check_out(args.out)
    rubric = load_rubric(args.rubric)
    tasks = load_tasks(args.tasks)

    from tqdm import tqdm

    from rcsd_core.files import write_jsonl
    from rcsd_core.models import check_model, load_model, resolve_device, set_cpu_threads
    from rcsd_core.preview import contexts_for, preview_chains
    from rcsd_core.scoring import summarize_scores

    if args.limit:
        tasks = tasks[: args.limit]
    contexts_for(args.context)
    # every input is checked before the slow part starts, so bad input costs no model load
    resolve_device(args.device)
    check_model(args.model)
    if args.judge:
        check_model(args.judge)
    if not args.temperature >= 0:
        raise InputError(f"must be 0 (greedy) or more, got {args.temperature}", field="--temperature")
    threads = set_cpu_threads(args.threads, resolve_device(args.device))
    on = f" on {threads} CPU thread{'s' if threads > 1 else ''}" if threads else ""
    print(f"loading {args.model}{on} ...", file=sys.stderr)
    model, tokenizer = load_model(args.model, device=args.device)
    judge = _load_judge(args.judge, device=args.device) if args.judge else None
    bar = tqdm(total=len(tasks) * args.samples * len(contexts_for(args.context)), desc="sampling", unit="chain",
               disable=None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    records, stats = preview_chains(rubric, tasks, model=model, tokenizer=tokenizer, model_name=args.model,
                                    samples=args.samples, max_new_tokens=args.max_new_tokens, context=args.context,
                                    seed=args.seed, temperature=args.temperature, judge=judge, progress=progress)
    bar.close()
    _write_out(args.out, records, write_jsonl)
    for kind in contexts_for(args.context):
        print(f"\n{kind} context")
        print(_table(summarize_scores(rubric, [r for r in records if r["context"] == kind])))
    print(f"wrote {len(records)} chains to {args.out} ({stats.tokens} tokens, {stats.tokens_per_s:.1f} tokens/s)",
          file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- app


def cmd_app(args: argparse.Namespace) -> int:
    app = Path(__file__).resolve().parent.parent / "app.py"
    if not app.is_file():
        raise InputError(f"the studio's app.py is not next to the package ({app}); install with pip install -e .")
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.address,
               "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    return subprocess.call(command, env=os.environ.copy())


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rcsd", description="Rubric-conditioned self-distillation studio.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("score", help="score chains JSONL against a rubric")
    p.add_argument("--rubric", required=True)
    p.add_argument("--chains", required=True)
    p.add_argument("--tasks", help="tasks JSONL giving references by task_id")
    p.add_argument("--judge", help="model that judges criteria without a check (e.g. smollm2-135m-instruct)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("preview", help="sample and score the model's own chains")
    p.add_argument("--rubric", required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--samples", type=_positive, default=2)
    p.add_argument("--max-new-tokens", type=_positive, default=64)
    p.add_argument("--context", choices=["student", "teacher", "both"], default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--limit", type=_positive, help="use only the first N tasks")
    p.add_argument("--judge", help="model that judges criteria without a check")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=_positive,
                   help="CPU threads for torch (default: the cores other processes leave idle)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("app", help="launch the studio (Streamlit) on localhost")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1")
    p.set_defaults(func=cmd_app)

    # Further subcommands (train, status, eval, signal, lint, calibrate, draft) register below.
    for register in _registrars():
        register(sub)
    return parser


def _registrars():
    """Subcommands that live beside their modules' CLI glue (see rcsd_core/commands/)."""
    from rcsd_core import commands

    return commands.REGISTRARS


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except InputError as exc:
        print(f"rcsd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rcsd {args.command}: interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------- helpers


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _load_judge(name: str, device: str = "auto"):
    from rcsd_core.judge import LocalJudge
    from rcsd_core.models import check_model, load_model

    check_model(name)
    model, tokenizer = load_model(name, device=device)
    try:
        return LocalJudge(model, tokenizer, name=name)
    except ValueError as exc:
        raise InputError(str(exc), field="--judge") from None


def _check_out(path: str) -> None:
    """Refuse an output path that can never be written before any work is done."""
    if Path(path).is_dir():
        raise InputError("is a folder, not a file", source=path, field="--out")


def _write_out(path: str, records: list[dict], write) -> None:
    """Write the output file; a path that cannot be written is the user's to fix (exit 2)."""
    try:
        write(path, records)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", source=path, field="--out") from None


def _table(frame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")


if __name__ == "__main__":
    sys.exit(main())
