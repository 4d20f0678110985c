"""Does RCSD pay? Base vs RCSD vs OPSD vs rejection-SFT on one preset, one table per criterion.

    python bench/method_table.py --preset cpu-demo --out bench/results/method_table_cpu_demo.json

For each method it runs the preset's round with that method (same prompts, samples, tokens,
learning rate and seed: the same budget), evaluating the eval split before step 1 and after the
last step in student context with the preset's fixed evaluation seed. The step-0 evaluation is
the base model (it is the same for every method: the adapter starts at zero); each method's last
evaluation is paired with it by prompt (`evaluation.before_after.compare_eval`: per-prompt means,
paired bootstrap 95% intervals). It prints a markdown table — one row per criterion and the total,
one column per method with its mean and change [95% CI] — and writes the figures as strict JSON
(and the markdown beside it). Results are written after each method, so a stopped run keeps what
it measured. `--steps`, `--threads` and `--model` override the preset for a quick try.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rcsd_core.contracts import runs  # noqa: E402
from rcsd_core.contracts.config import preset_config  # noqa: E402
from rcsd_core.contracts.rubric import rubric_from_data  # noqa: E402
from rcsd_core.files import atomic_write_text, strict_json  # noqa: E402

METHODS = ("rcsd", "opsd", "rejection_sft")


def run_method(preset: str, method: str, runs_root: Path, overrides: dict) -> tuple[Path, float]:
    """Train the preset's round with `method`, evaluating before step 1 and after the last step."""
    from rcsd_core.training.round import train_round

    config = preset_config(preset, method=method, eval_every=0, **overrides)
    run_id = f"{preset}-{method.replace('_', '-')}"
    shutil.rmtree(runs_root / run_id, ignore_errors=True)
    run_dir = runs.create_run(config, runs_root, run_id=run_id)
    started = time.perf_counter()
    result = train_round(run_dir)
    if result["status"] != "done":
        raise SystemExit(f"{method}: the round ended {result['status']}")
    return run_dir, time.perf_counter() - started


def evaluations(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """The first and the last in-round evaluation of a run (eval chain records)."""
    evals = [r for r in runs.read_samples(run_dir) if r.get("kind") == "eval"]
    steps = sorted({r["step"] for r in evals})
    return [r for r in evals if r["step"] == steps[0]], [r for r in evals if r["step"] == steps[-1]]


def method_rows(run_dir: Path, base: list[dict]) -> list[dict]:
    from rcsd_core.evaluation.before_after import compare_eval

    rubric = rubric_from_data(runs.load_run_config(run_dir).rubric)
    _, after = evaluations(run_dir)
    return strict_json(compare_eval(base, after, rubric).to_dict(orient="records"))


def markdown(table: dict) -> str:
    methods = list(table["methods"])
    lines = ["| criterion (weight) | base | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    first = table["methods"][methods[0]]["rows"]
    for i, row in enumerate(first):
        name = row["criterion"] if row["weight"] is None else f"{row['criterion']} ({row['weight']:g})"
        cells = [_num(row["before"])]
        for method in methods:
            r = table["methods"][method]["rows"][i]
            ci = "" if r["ci_low"] is None else f" [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            change = "" if r["diff"] is None else f" ({r['diff']:+.3f}{ci})"
            cells.append(_num(r["after"]) + change)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    seconds = " · ".join(f"{m} {table['methods'][m]['seconds']:.0f} s" for m in methods)
    lines.append("")
    lines.append(f"{table['eval_prompts']} eval prompts × {table['eval_samples']} chains, paired by prompt with 95% "
                 f"bootstrap intervals; round time: {seconds}; machine {table['machine']}, load before "
                 f"{table['load_before']}, after {table['load_after']}.")
    return "\n".join(lines) + "\n"


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-demo")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--runs-root", default=str(ROOT / "bench" / "runs"))
    parser.add_argument("--steps", type=int, help="override the preset's steps (a quick try)")
    parser.add_argument("--threads", type=int, help="override the preset's CPU threads")
    parser.add_argument("--model", help="override the preset's model (tiny-random: a smoke test of this script)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "method_table_cpu_demo.json"))
    args = parser.parse_args()

    overrides = {k: v for k, v in (("steps", args.steps), ("threads", args.threads), ("model", args.model)) if v}
    out = Path(args.out)
    table = {"preset": args.preset, "overrides": overrides, "command": " ".join(sys.argv),
             "machine": f"{platform.node()}, {os.cpu_count()} cores", "load_before": round(os.getloadavg()[0], 2),
             "started": runs.now(), "methods": {}}
    base = None
    for method in args.methods.split(","):
        run_dir, seconds = run_method(args.preset, method, Path(args.runs_root), overrides)
        first, _ = evaluations(run_dir)
        if base is None:
            base = first
            table["eval_prompts"] = len({r["task_id"] for r in base})
            table["eval_samples"] = len(base) // max(1, table["eval_prompts"])
        elif [r["text"] for r in first] != [r["text"] for r in base]:
            print(f"warning: {method}'s step-0 evaluation differs from the first method's", file=sys.stderr)
        table["methods"][method] = {"run_dir": str(run_dir), "seconds": round(seconds, 1),
                                    "rows": method_rows(run_dir, base)}
        table["load_after"] = round(os.getloadavg()[0], 2)
        atomic_write_text(out, json.dumps(strict_json(table), indent=1, allow_nan=False) + "\n")
        atomic_write_text(out.with_suffix(".md"), markdown(table))
        print(f"[{runs.now()}] {method} done in {seconds:.0f} s", flush=True)
    table["finished"] = runs.now()
    atomic_write_text(out, json.dumps(strict_json(table), indent=1, allow_nan=False) + "\n")
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
