"""`rcsd import`, `rcsd export`, `rcsd export-model`: data sets in and out, and a run's model out.

    rcsd import --format healthbench|rar|csv|parquet|trl|detect SRC --out DIR     # DIR/tasks.jsonl, DIR/rubric.yaml
    rcsd export --format trl-prompt-completion|trl-conversational|sdft|argilla|labelstudio
                --chains C [--scores S] [--reviews R] [--tasks T] [--rubric R] --out FILE
    rcsd export-model --run-dir D --out DIR [--dtype model|float32|bfloat16|float16]

A malformed source exits 2 with one line naming its file, line (or row) and field, and writes
nothing; outputs are written atomically once everything is read (`rcsd_core.formats`). The
merged model is written by `rcsd_core.training.export` (staging folder, then one rename).
"""

from __future__ import annotations

import argparse
import sys

IMPORT_FORMATS = ("healthbench", "rar", "csv", "parquet", "trl")
EXPORT_FORMATS = ("trl-prompt-completion", "trl-conversational", "sdft", "argilla", "labelstudio")


def register(sub) -> None:
    p = sub.add_parser("import", help="tasks (and a rubric) from HealthBench, RaR, CSV, Parquet or TRL data")
    p.add_argument("--format", required=True, choices=[*IMPORT_FORMATS, "detect"],
                   help="detect: from the file type and the first record's fields")
    p.add_argument("src", help="the source: a JSONL, Parquet or CSV file, or a datasets save_to_disk folder")
    p.add_argument("--out", required=True, help="folder to write tasks.jsonl and rubric.yaml into")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="chains as TRL / SDFT training data, or reviewed chains for Argilla / "
                                      "Label Studio")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    p.add_argument("--chains", required=True, help="chains JSONL (a preview's output, a run's samples)")
    p.add_argument("--scores", help="scores JSONL (rcsd score's output)")
    p.add_argument("--reviews", help="reviews JSONL (the Review page's export): rejected chains are left out of "
                                     "training data")
    p.add_argument("--tasks", help="tasks JSONL: the prompts, references and per-task criteria of the chains")
    p.add_argument("--rubric", help="the shared rubric (sdft renders it as the privileged context)")
    p.add_argument("--out", required=True, help=".jsonl or .parquet (TRL, SDFT); .json or .jsonl (Argilla, "
                                                "Label Studio)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("export-model", help="the base model with a run's adapter merged, as a folder "
                                            "AutoModelForCausalLM.from_pretrained loads")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True, help="a new folder")
    p.add_argument("--dtype", default="model", choices=["model", "float32", "bfloat16", "float16"],
                   help="dtype of the saved weights: 'model' is the one the base checkpoint declares")
    p.add_argument("--device", default="cpu", help="where to merge: cpu (default) | cuda | cuda:N")
    p.set_defaults(func=cmd_export_model)


def cmd_import(args: argparse.Namespace) -> int:
    from rcsd_core.formats.imports import import_source, sniff_format, write_import

    fmt = sniff_format(args.src) if args.format == "detect" else args.format
    result = import_source(fmt, args.src)
    tasks_path, rubric_path = write_import(args.out, result)
    own = sum(1 for t in result.tasks if t.criteria)
    criteria = sum(len(t.criteria or []) for t in result.tasks)
    print(f"{fmt}: wrote {len(result.tasks)} tasks ({own} with their own criteria, {criteria} criteria in all) to "
          f"{tasks_path} and the shared rubric to {rubric_path}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rcsd_core.contracts.chains import load_chains
    from rcsd_core.contracts.rubric import load_rubric
    from rcsd_core.contracts.tasks import check_task_rubrics, load_tasks
    from rcsd_core.formats.exports import check_export_path, export_records, load_reviews, load_scores, write_export

    check_export_path(args.format, args.out)
    chains = load_chains(args.chains)
    tasks = load_tasks(args.tasks) if args.tasks else None
    rubric = load_rubric(args.rubric) if args.rubric else None
    if rubric is not None and tasks:
        check_task_rubrics(rubric, tasks, source=args.tasks)
    scores = load_scores(args.scores) if args.scores else None
    reviews = load_reviews(args.reviews) if args.reviews else None
    records = export_records(args.format, chains, tasks=tasks, rubric=rubric, scores=scores, reviews=reviews,
                             source=args.chains)
    write_export(args.out, records)
    left = len(chains) - len(records) if args.format.startswith("trl-") else 0
    note = f" ({left} rejected chains left out)" if left else ""
    print(f"wrote {len(records)} {args.format} records to {args.out}{note}", file=sys.stderr)
    return 0


def cmd_export_model(args: argparse.Namespace) -> int:
    from rcsd_core.training.export import check_export, export_merged_model

    check_export(args.run_dir, args.out)  # refused in a second, before torch loads a model
    out = export_merged_model(args.run_dir, args.out, dtype=args.dtype, device=args.device)
    print(f"wrote the merged model to {out}", file=sys.stderr)
    return 0
