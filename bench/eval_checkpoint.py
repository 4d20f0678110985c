"""Score a round's checkpoint with the round's own evaluation protocol, paired with its step-0 eval.

    python bench/eval_checkpoint.py bench/runs/cpu-demo-rcsd --adapter /tmp/adapter-step20 --label step-20

A round evaluates the eval split before step 1 (`samples.jsonl`, kind `eval`, step 0) in student
context with a fixed seed. This loads the run's base model with a saved adapter, samples the same
eval prompts with the same seed, sample count, token budget and temperature, scores them with the
run's frozen rubric and pairs them by prompt with the step-0 records (`evaluation.compare_eval`,
paired bootstrap 95% CIs). Use it for a checkpoint the round has not evaluated itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rcsd_core.contracts import runs  # noqa: E402
from rcsd_core.evaluation.before_after import compare_eval, sample_student  # noqa: E402
from rcsd_core.files import strict_json  # noqa: E402
from rcsd_core.modeling.models import load_adapter, load_model, set_cpu_threads  # noqa: E402
from rcsd_core.contracts.rubric import rubric_from_data  # noqa: E402
from rcsd_core.contracts.tasks import load_tasks  # noqa: E402
from rcsd_core.training.schedule import derive_seed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--label", default="checkpoint")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    config = runs.load_run_config(args.run_dir)
    rubric = rubric_from_data(config.rubric, source=args.run_dir / "config.yaml")
    eval_tasks = load_tasks(config.tasks, split="eval")
    eval_tasks = eval_tasks[:config.eval_tasks] if config.eval_tasks else eval_tasks
    before = [r for r in runs.read_samples(args.run_dir) if r.get("kind") == "eval" and r["step"] == 0]
    if not before:
        print(f"{args.run_dir}: no step-0 evaluation in samples.jsonl", file=sys.stderr)
        return 1

    set_cpu_threads(args.threads)
    model, tokenizer = load_model(config.model, device=config.device, dtype=config.dtype)
    model = load_adapter(model, args.adapter).eval()
    _, after = sample_student(model, tokenizer, rubric, eval_tasks, samples=config.eval_samples,
                              max_new_tokens=config.max_new_tokens, seed=derive_seed(config.eval_seed, 0),
                              temperature=config.temperature, top_p=config.top_p,
                              batch_size=config.sampling_batch_size)
    table = compare_eval(before, after, rubric)
    print(f"{args.run_dir}: step 0 vs {args.label} ({len(after)} eval chains)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    if args.out:
        result = {"run_dir": str(args.run_dir), "after": args.label, "eval_chains": len(after),
                  "criteria": table.to_dict(orient="records"),
                  "after_texts": [{"task_id": r["task_id"], "text": r["text"]} for r in after[:6]]}
        args.out.write_text(json.dumps(strict_json(result), indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
