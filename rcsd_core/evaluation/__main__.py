"""Evaluate a run's adapter against its base model as a job: the entry point the studio launches.

    python -m rcsd_core.evaluation --run-dir runs/<id> [--limit N] [--samples N] [--seed S]

Calls `evaluate_run` (which writes eval.json atomically) and keeps the run's eval-status.json
current: running (with this pid, `started`, and `done`/`total` chains sampled so far) → done, or
failed with the reason. The studio's Results page
launches it detached (`rcsd_core.contracts.runs.launch_evaluation`) and polls that file.
Exit codes: 0 done, 1 failed, 2 bad input (one line on stderr), 130 interrupted.
This is the only place of the evaluation layer that parses arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from rcsd_core.contracts.runs import CONFIG_FILE, write_eval_status
from rcsd_core.errors import InputError
from rcsd_core.files import utc_now


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rcsd_core.evaluation",
                                     description="Score the student with and without a run's adapter.")
    parser.add_argument("--run-dir", required=True, help="a run directory with a saved adapter")
    parser.add_argument("--limit", type=positive, help="eval prompts: the first N of the eval split "
                                                       "(default the run's eval_tasks)")
    parser.add_argument("--samples", type=positive, help="chains per prompt (default the run's eval_samples)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = Path(args.run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        print(f"rcsd eval: error: {run_dir}: not a run directory (no config.yaml)", file=sys.stderr)
        return 2
    return run_job(run_dir, args)


def run_job(run_dir: Path, args: argparse.Namespace) -> int:
    """evaluate_run (which holds the run's lock) with eval-status.json kept current; the exit code."""
    write_eval_status(run_dir, "running", pid=os.getpid(), error=None, done=0, total=None, started=utc_now())

    def progress(done: int, total: int) -> None:  # the page's progress bar and ETA read these
        write_eval_status(run_dir, "running", done=done, total=total)

    try:
        from rcsd_core.evaluation.before_after import evaluate_run  # torch loads here, after the status

        result = evaluate_run(run_dir, tasks=args.limit, samples=args.samples, seed=args.seed, progress=progress)
    except InputError as exc:
        write_eval_status(run_dir, "failed", error=str(exc))
        print(f"rcsd eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        write_eval_status(run_dir, "failed", error="interrupted")
        return 130
    except Exception as exc:
        traceback.print_exc()
        write_eval_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    total = result["total"]
    write_eval_status(run_dir, "done", eval_prompts=result["eval_prompts"], seconds=result["seconds"],
                      total_before=total["before"], total_after=total["after"])
    print(f"eval total {total['before']} -> {total['after']} on {result['eval_prompts']} prompts; "
          f"wrote {run_dir / 'eval.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
