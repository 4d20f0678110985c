"""The measured effect of a round on this 2-core machine (issue 3): RCSD vs rejection-SFT.

    nohup python bench/cpu_demo_effect.py > bench/results/cpu_demo_effect.log 2>&1 &

With the embedded SmolLM2-135M-Instruct, the arithmetic sample rubric and the "cpu-demo" preset
(30 steps x 4 prompts x 4 samples x 64 tokens, LoRA r16, full forward KL, lr 3e-4, frozen teacher
reading the rubric + one worked example as a system message), it runs

  1. an `rcsd` round, then `rcsd eval` on it (student context, eval split, fixed seed,
     without vs with the adapter, paired bootstrap 95% CIs per criterion and for the total,
     held-out forward KL to the frozen rubric teacher before/after);
  2. a `rejection_sft` round at the same budget (same prompts, samples, tokens, lr), and its eval.

Equivalent commands (what this script does, step by step):
    rcsd train --preset cpu-demo --run-dir bench/runs/cpu-demo-rcsd
    rcsd eval  --run-dir bench/runs/cpu-demo-rcsd --seed 0
    (then the same with `method: rejection_sft` in a config copied from the preset)
The in-round evaluation runs before step 1 and at the end only (--eval-every 0), which leaves
training unchanged (evaluation restores the RNG state and does not touch the weights) and saves
two 80-chain evaluations per round.
Results go to bench/results/cpu_demo_effect.json after each stage (partial results survive).
Nothing in the evaluation is tuned to the outcome: the eval split, seed and sample count are the
preset's, fixed before any run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rcsd_core.contracts import runs  # noqa: E402
from rcsd_core.contracts.config import preset_config  # noqa: E402


def summarize(result: dict) -> dict:
    keep = ("criterion", "weight", "before", "after", "diff", "ci_low", "ci_high", "significant")
    return {"total": {k: result["total"].get(k) for k in keep},
            "criteria": [{k: r.get(k) for k in keep} for r in result["criteria"]],
            "divergence": result["divergence"], "mean_tokens": result["mean_tokens"],
            "eval_prompts": result["eval_prompts"], "samples": result["samples"], "seed": result["seed"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-root", default=str(ROOT / "bench" / "runs"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "cpu_demo_effect.json"))
    parser.add_argument("--methods", default="rcsd,rejection_sft")
    parser.add_argument("--steps", type=int, help="override the preset's steps (for a quick try)")
    parser.add_argument("--threads", type=int, help="override the preset's CPU threads (2); on a shared, "
                                                    "oversubscribed machine 1 is much faster")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="in-round evaluation interval (default 0: before and at the end only). It does "
                             "not change training: evaluation restores the RNG state and leaves the weights")
    parser.add_argument("--skip-eval", action="store_true",
                        help="skip the separate `rcsd eval` pass; compare the round's own first and last "
                             "in-round evaluations instead (bench/compare_round_evals.py, same protocol)")
    args = parser.parse_args()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"preset": "cpu-demo", "machine": f"{platform.node()} ({platform.processor() or platform.machine()})",
              "started": runs.now(), "rounds": {}}
    for method in args.methods.split(","):
        overrides = {"method": method}
        if args.steps:
            overrides["steps"] = args.steps
        if args.threads:
            overrides["threads"] = args.threads
        overrides["eval_every"] = args.eval_every
        config = preset_config("cpu-demo", **overrides)
        run_id = f"cpu-demo-{method.replace('_', '-')}"
        run_dir = Path(args.runs_root) / run_id
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir = runs.create_run(config, args.runs_root, run_id=run_id)
        print(f"[{runs.now()}] {method}: training in {run_dir}", flush=True)

        from rcsd_core.evaluation.before_after import evaluate_run
        from rcsd_core.training.round import train_round

        t0 = time.perf_counter()
        result = train_round(run_dir)
        train_s = time.perf_counter() - t0
        metrics = runs.read_metrics(run_dir)
        entry = {"run_dir": str(run_dir), "status": result["status"], "train_seconds": round(train_s, 1),
                 "config": {k: getattr(config, k) for k in ("model", "method", "steps", "prompts_per_step",
                                                            "samples_per_prompt", "max_new_tokens", "learning_rate",
                                                            "divergence", "teacher", "teacher_examples",
                                                            "teacher_example_turns", "teacher_reference", "lora_rank",
                                                            "seed")},
                 "eval_curve": metrics[[c for c in metrics.columns if c == "step" or c.startswith("eval/")]]
                 .dropna(subset=["eval/total"]).to_dict(orient="records"),
                 "seconds_per_step": float(metrics["time/step_s"].dropna().mean())}
        report["rounds"][method] = entry
        _write(out, report)
        print(f"[{runs.now()}] {method}: {result['status']} in {train_s:.0f} s", flush=True)
        if args.skip_eval:
            continue

        t0 = time.perf_counter()
        evaluation = evaluate_run(run_dir, seed=0)
        entry["eval"] = summarize(evaluation)
        entry["eval_seconds"] = round(time.perf_counter() - t0, 1)
        _write(out, report)
        total = evaluation["total"]
        print(f"[{runs.now()}] {method}: eval/total {total['before']:.3f} -> {total['after']:.3f} "
              f"({total['diff']:+.3f} [{total['ci_low']:+.3f}, {total['ci_high']:+.3f}])", flush=True)
    report["finished"] = runs.now()
    _write(out, report)
    return 0


def _write(path: Path, report: dict) -> None:
    from rcsd_core.files import atomic_write_text, strict_json

    atomic_write_text(path, json.dumps(strict_json(report), indent=1, default=str, allow_nan=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
