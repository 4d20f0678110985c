"""CLI glue for human review: agreement between reviewers, and of a judge with them.

    rcsd agreement --reviews R.jsonl [--scores S.jsonl] --out A.json

`--reviews` is the review store's export, one row per reviewer's decision
({"chain_id", "reviewer", "criterion_scores": {id: 1.0|0.0|null}}; the last row of a reviewer for a
chain wins); `--scores` the automatic scores (`rcsd score` / preview records) compared with the
majority human verdict. The JSON is {"criteria": {id: {"n_items", "fleiss_kappa",
"krippendorff_alpha", "judge_kappa", "precision", "recall", "f1", "note"}}}; stdout shows the same
per criterion and Cohen's kappa of each reviewer pair. Bad input exits 2 with one stderr line naming
file, line and field, and writes no output file.
"""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("agreement", help="reviewer-reviewer and judge-human agreement per criterion")
    p.add_argument("--reviews", required=True,
                   help='review rows JSONL: {"chain_id", "reviewer", "criterion_scores": {...}}')
    p.add_argument("--scores", help="automatic scores JSONL (rcsd score / preview), compared with the majority verdict")
    p.add_argument("--out", required=True, help="write the agreement as JSON")
    p.set_defaults(func=cmd_agreement)


def cmd_agreement(args: argparse.Namespace) -> int:
    import pandas as pd

    from rcsd_core.cli.args import format_table
    from rcsd_core.files import atomic_write_text, strict_json
    from rcsd_core.scoring.agreement import (JSON_KEYS, agreement_report, judge_scores_from_file,
                                             review_rows_from_file, to_json)

    rows = review_rows_from_file(args.reviews)
    judge = judge_scores_from_file(args.scores) if args.scores else None
    report = agreement_report(rows, judge)
    atomic_write_text(args.out, json.dumps(strict_json(to_json(report)), indent=2, ensure_ascii=False) + "\n")
    if not report["criteria"]:
        print("no review rows")
        return 0
    table = pd.DataFrame([{"criterion": cid, **{k: row[k] for k in JSON_KEYS}}
                          for cid, row in report["criteria"].items()])
    for key in JSON_KEYS[1:-1]:  # None prints as '-' like the other tables
        table[key] = pd.to_numeric(table[key])
    print(format_table(table))
    pairs = pd.DataFrame([{"criterion": cid, **pair} for cid, row in report["criteria"].items()
                          for pair in row["pairs"]])
    if len(pairs):
        print("\nCohen's kappa per reviewer pair")
        print(format_table(pairs))
    return 0
