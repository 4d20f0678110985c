"""CLI glue for rounds: `rcsd train`, `rcsd status`, `rcsd eval`.

    rcsd train  --config C [--runs-root runs | --run-dir D] [--preset P] [--detach]
    rcsd train  --run-dir D --resume                 # continue a stopped or failed round
    rcsd status --run-dir D                          # queued|running|done|failed|stopped, step, error, lock
    rcsd eval   --run-dir D [--limit N] [--samples N] [--seed S]

`rcsd train` creates the run directory (config frozen, rubric inlined) and runs the round in
this process, so Ctrl-C stops it cleanly after the current step; `--detach` launches it in the
background instead (what the studio does) and prints the pid. For several processes, create the
run with `--no-start` and launch `torchrun`/`accelerate launch -m rcsd_core.training --run-dir D`.
A run whose lock another process holds (runs.RunLock) is refused with exit 2 and who holds it;
a foreground round holds the lock for its whole length.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rcsd_core.cli.args import positive


def cmd_train(args: argparse.Namespace) -> int:
    from rcsd_core.errors import InputError
    from rcsd_core.contracts import runs

    if args.resume:
        if not args.run_dir:
            raise InputError("--resume needs --run-dir", field="--run-dir")
        run_dir = Path(args.run_dir)
        if not (run_dir / runs.CONFIG_FILE).is_file():
            raise InputError("not a run directory (no config.yaml)", source=run_dir)
        runs.ensure_unlocked(run_dir)
    else:
        from rcsd_core.contracts.config import load_config, preset_config

        if args.config:
            config = load_config(args.config)
        elif args.preset:
            config = preset_config(args.preset)
        else:
            raise InputError("give --config C or --preset P (or --run-dir D --resume)", field="--config")
        if args.run_dir:
            run_dir = runs.create_run(config, Path(args.run_dir).parent, run_id=Path(args.run_dir).name)
        else:
            run_dir = runs.create_run(config, args.runs_root)
        print(f"run directory: {run_dir}", file=sys.stderr)
    if args.no_start:
        print(run_dir)
        return 0
    if args.detach:
        pid = runs.launch_round(run_dir, resume=args.resume)
        print(f"launched pid {pid}; follow with: rcsd status --run-dir {run_dir}  (log: {run_dir / runs.LOG_FILE})",
              file=sys.stderr)
        print(run_dir)
        return 0
    from rcsd_core.training.round import train_round

    lock = runs.RunLock(run_dir, purpose="rcsd train").acquire()   # RunLocked (exit 2) when in use
    try:
        (Path(run_dir) / runs.STOP_FILE).unlink(missing_ok=True)  # a stale request from an earlier process
        result = train_round(run_dir, resume=args.resume)
    except InputError:
        raise
    except Exception as exc:
        print(f"rcsd train: the round failed: {type(exc).__name__}: {exc} (traceback in {run_dir / runs.LOG_FILE})",
              file=sys.stderr)
        return 1
    finally:
        lock.release()
    print(json.dumps({k: v for k, v in result.items() if k != "metrics"}))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from rcsd_core.contracts import runs

    status = runs.read_status(args.run_dir)
    status["lock"] = runs.lock_holder(args.run_dir)   # {pid, host, started, purpose} of the owner, or null
    print(json.dumps(status, indent=1))
    if args.log:
        print(runs.tail_log(args.run_dir, args.log), file=sys.stderr)
    return 0 if status["status"] in ("queued", "running", "done", "stopped") else 1


def cmd_eval(args: argparse.Namespace) -> int:
    from rcsd_core.evaluation.before_after import evaluate_run

    result = evaluate_run(args.run_dir, tasks=args.limit, samples=args.samples, seed=args.seed)
    rows = result["criteria"] + [result["total"]]
    print(f"{'criterion':<22}{'before':>8}{'after':>8}{'diff':>8}   95% CI")
    def f(v):
        return "-" if v is None else f"{v:.3f}"

    for r in rows:
        ci = "-" if r["ci_low"] is None else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        print(f"{r['criterion']:<22}{f(r['before']):>8}{f(r['after']):>8}{f(r['diff']):>8}   {ci}")
    d = result["divergence"]
    print(f"held-out {d['name']} to the frozen teacher: {f(d['before'])} -> {f(d['after'])}")
    print(f"wrote {Path(args.run_dir) / 'eval.json'}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="run a distillation round (creates the run directory)")
    p.add_argument("--config", help="round config YAML")
    p.add_argument("--preset", help="a preset instead of a config (cpu-demo, gpu-lora)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--run-dir", help="the run directory (new, or existing with --resume)")
    where.add_argument("--runs-root", default="runs", help="folder for a new run directory (default runs/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.add_argument("--detach", action="store_true", help="run in the background; print the pid and return")
    p.add_argument("--no-start", action="store_true", help="only create the run directory and print it")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("status", help="the status of a round (a dead process shows as failed)")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--log", type=int, default=0, metavar="N", help="also print the last N lines of log.txt")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("eval", help="score the student with and without the run's adapter on the eval split")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--limit", "--tasks", dest="limit", type=positive,
                   help="eval prompts: the first N of the eval split (default the run's eval_tasks); "
                        "--tasks is the older name")
    p.add_argument("--samples", type=positive, help="chains per prompt (default the run's eval_samples)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)
