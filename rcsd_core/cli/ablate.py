"""CLI: `rcsd ablate` — does the rubric matter, and where does the teacher's pull come from?

    rcsd ablate --rubric R --tasks T [--model M] [--samples N] [--max-new-tokens K] [--seed S] [--limit L]
                [--shuffled-rubric R2] [--no-attribution] [--divergence D] [--run-dir D] --out A.json

Writes the report of `design/ablation.py` (variants full / criteria_only / examples_only /
generic / shuffled, the verdict, per-criterion attribution) and prints its tables and verdict.
The shuffled variant shows the teacher another rubric's criteria: `--shuffled-rubric`, or else the
first other sample rubric in `sample_rubrics/` (the report's `shuffled_source` names it).
Bad input exits 2 with one line on stderr before any model loads; no output file is written then.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rcsd_core.cli.args import add_model_args, add_sampling_args, add_teacher_args, check_divergence, check_out, format_table
from rcsd_core.errors import InputError

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "sample_rubrics"


def register(sub) -> None:
    p = sub.add_parser("ablate", help="does the rubric matter? the teacher under full / criteria-only / "
                                      "examples-only / generic / shuffled contexts, with a verdict")
    p.add_argument("--rubric", required=True)
    p.add_argument("--tasks", required=True)
    add_model_args(p)
    add_teacher_args(p)
    add_sampling_args(p, samples=2)
    p.add_argument("--shuffled-rubric", help="another rubric whose criteria the shuffled teacher reads "
                                             "(default: the first other sample rubric)")
    p.add_argument("--no-attribution", action="store_true", help="skip leaving each criterion out in turn")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_ablate)


def shuffled_source(rubric, path: str | None):
    """(other rubric, phrase naming it), from --shuffled-rubric or the first other sample rubric."""
    from rcsd_core.contracts.rubric import load_rubric

    if path:
        other = load_rubric(path)
        if other.version == rubric.version:
            raise InputError("the shuffled rubric is the rubric itself", source=path, field="--shuffled-rubric")
        return other, f"rubric {other.name!r} ({path})"
    for candidate in sorted(SAMPLES_DIR.glob("*.yaml")):
        other = load_rubric(candidate)
        if other.name != rubric.name:
            return other, f"sample rubric {other.name!r} (sample_rubrics/{candidate.name})"
    return None


def cmd_ablate(args: argparse.Namespace) -> int:
    from rcsd_core.contracts.rubric import load_rubric
    from rcsd_core.contracts.tasks import load_tasks

    rubric = load_rubric(args.rubric)
    tasks = load_tasks(args.tasks)[: args.limit] if args.limit else load_tasks(args.tasks)
    check_divergence(args.divergence)
    check_out(args.out)
    if not args.temperature >= 0:
        raise InputError(f"temperature must be >= 0, got {args.temperature}", field="temperature")
    shuffled = shuffled_source(rubric, args.shuffled_rubric)
    layout = None
    if args.run_dir:
        from rcsd_core.contracts.runs import load_run_config

        layout = load_run_config(args.run_dir).teacher_layout()

    from tqdm import tqdm

    from rcsd_core.contracts.config import TeacherLayout
    from rcsd_core.design.ablation import ModelBackend, ablation_table, attribution_table, run_ablation
    from rcsd_core.files import atomic_write_text
    from rcsd_core.modeling.models import load_model

    print(f"loading {args.model} ...", file=sys.stderr)
    model, tokenizer = load_model(args.model, device=args.device)
    bar = tqdm(desc="ablate", unit="chain", disable=None, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    backend = ModelBackend(model, tokenizer, temperature=args.temperature, divergence=args.divergence)
    report = run_ablation(rubric, tasks, backend, samples=args.samples, max_new_tokens=args.max_new_tokens,
                          seed=args.seed, shuffled=shuffled,
                          layout=layout or TeacherLayout(include_reference=args.include_reference),
                          attribution=not args.no_attribution, progress=progress, model_name=args.model)
    bar.close()
    atomic_write_text(args.out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(format_table(ablation_table(report)))
    if report["attribution"]:
        print(format_table(attribution_table(report)))
    print(f"shuffled: {report['variant_contexts']['shuffled']}")
    print(f"verdict: {report['verdict']}")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
