"""Before/after of a round from its own in-round evaluations (first vs last), with paired 95% CIs.

    python bench/compare_round_evals.py bench/runs/cpu-demo-rcsd [--out bench/results/x.json]

A round evaluates the eval split in student context with a fixed seed before step 1 and at the
end (`samples.jsonl` records of kind `eval`, `metrics.jsonl` `eval/*`). This pairs the first and
the last of those evaluations by prompt (`evaluation.compare_eval`) — the same protocol as
`rcsd eval`, without sampling the eval split twice more — and prints the table and the held-out
divergence before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rcsd_core.contracts import runs  # noqa: E402
from rcsd_core.evaluation.before_after import compare_eval  # noqa: E402
from rcsd_core.files import strict_json  # noqa: E402
from rcsd_core.contracts.rubric import rubric_from_data  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--out")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    evals = [r for r in runs.read_samples(run_dir) if r.get("kind") == "eval"]
    steps = sorted({r["step"] for r in evals})
    if len(steps) < 2:
        print(f"{run_dir}: only {len(steps)} in-round evaluation(s) so far", file=sys.stderr)
        return 1
    first, last = steps[0], steps[-1]
    table = compare_eval([r for r in evals if r["step"] == first], [r for r in evals if r["step"] == last],
                         _rubric(run_dir))
    metrics = runs.read_metrics(run_dir)
    div = metrics.dropna(subset=["eval/divergence"]).set_index("step")["eval/divergence"]
    print(f"{run_dir}: eval at step {first} vs step {last}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    print(f"held-out divergence: {div.get(first):.4f} -> {div.get(last):.4f}")
    if args.out:
        result = {"run_dir": str(run_dir), "steps": [first, last], "criteria": table.to_dict(orient="records"),
                  "divergence": {"before": div.get(first), "after": div.get(last)},
                  "eval_chains": len([r for r in evals if r["step"] == last])}
        Path(args.out).write_text(json.dumps(strict_json(result), indent=1, allow_nan=False) + "\n")
    return 0


def _rubric(run_dir: Path):
    """The rubric frozen into the run's config.yaml."""
    return rubric_from_data(runs.load_run_config(run_dir).rubric, source=run_dir / "config.yaml")


if __name__ == "__main__":
    sys.exit(main())
