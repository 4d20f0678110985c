"""Seconds per `cpu-demo` step at this checkout vs an earlier commit, side by side in one run.

    python bench/cpu_round_compare.py --base 9c8a6db --steps 4 --out bench/results/cpu_round_compare.jsonl
    python bench/cpu_round_compare.py --base 9c8a6db --head-set sampler=static --head-set dtype=bfloat16
    python bench/cpu_round_compare.py --base 9c8a6db --steps 6 --rounds 2     # base, head, head, base

Each round uses the `cpu-demo` preset as its own commit ships it (embedded SmolLM2-135M-Instruct,
4 prompts × 4 samples × 64 tokens a step, LoRA r16, full forward KL, 2 threads, seed 0, both on the
earlier commit's arithmetic rubric and tasks; the speed
settings — dtype, micro-batch, divergence chunk, sampler — are each commit's own and recorded in
the result line) with `--steps` steps and a one-prompt evaluation (the evaluation is not part of a
step's time). The earlier commit is
unpacked with `git archive` into a temporary folder and run with its own code (`rcsd train`), then
this checkout; the same machine, one after the other, with the load average noted before and after
each. `--rounds N` runs each side N times in the order base, head, head, base, … (a machine that
slows down or speeds up during the comparison then weighs on both sides alike; this VM's speed
drifts by 10–20% over minutes), and reports each round and the mean. `--head-set key=value` adds
config keys only this checkout knows. The figures are the mean seconds of steps 2..N (step 1 warms
up) of `time/step_s`, `time/sampling_s`, `time/teacher_s`, `time/student_s` from each run's
metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PRESET_KEYS = ("dtype", "micro_batch_size", "chunk_size", "sampler", "threads")
PHASES = ("time/step_s", "time/sampling_s", "time/teacher_s", "time/student_s", "time/optimizer_s")


def round_config(code_dir: Path, samples: Path, steps: int, extra: dict) -> dict:
    """The `cpu-demo` preset as that code tree ships it (presets moved between commits), shortened, on
    the rubric and tasks of `samples` (the earlier commit's: both sides read the same teacher prompts)."""
    preset = yaml.safe_load(next(code_dir.glob("rcsd_core/**/presets/cpu-demo.yaml")).read_text())
    return {**preset, "rubric": str(samples / "arithmetic.yaml"),
            "tasks": str(samples / "arithmetic.tasks.jsonl"), "steps": steps, "eval_every": 0,
            "eval_tasks": 1, "eval_samples": 1, "checkpoint_every": 0, **extra}


def run_round(code_dir: Path, config: dict, work: Path, name: str) -> dict:
    """`rcsd train` of `config` with the code in `code_dir`; the per-phase means of steps 2..N."""
    config_path = work / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_dir = work / "runs" / name
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rcsd_core.cli", "train", "--config", str(config_path),
                           "--run-dir", str(run_dir)], cwd=code_dir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name}: rcsd train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [m for m in lines if m["step"] >= 2]
    means = {k: round(sum(m[k] for m in steps) / len(steps), 3) for k in PHASES if all(k in m for m in steps)}
    return {"seconds_per_step": means, "steps_measured": len(steps), "wall_s": round(time.perf_counter() - started, 1),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "loss": [m.get("train/loss") for m in lines if m["step"] >= 1]}


def mean_round(runs: list[dict]) -> dict:
    """Several rounds of one side: the mean seconds per phase, and each round as it was."""
    means = {k: round(sum(r["seconds_per_step"][k] for r in runs) / len(runs), 3) for k in runs[0]["seconds_per_step"]}
    return {"seconds_per_step": means, "rounds": runs}


def settings(items: list[str]) -> dict:
    """KEY=VALUE pairs, each value read as YAML (numbers, booleans, strings)."""
    return {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in items)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the earlier commit (e.g. the previous main)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each side, in the order base, head, head, base, …")
    parser.add_argument("--head-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config key for this checkout only (YAML value), e.g. sampler=static")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config key for both rounds (e.g. model=tiny-random to try the script)")
    parser.add_argument("--out", help="append the result line to this JSONL file")
    args = parser.parse_args()
    both, extra = settings(args.set), settings(args.head_set)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
                                cwd=ROOT, capture_output=True, text=True).stdout.strip())  # results: its own output
    with tempfile.TemporaryDirectory(prefix="rcsd-compare-") as tmp:
        work = Path(tmp)
        base_dir = work / "base"
        base_dir.mkdir()
        archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base_dir)], input=archive, check=True)
        result = {"machine": f"{platform.node()}, {os.cpu_count()} cores", "base": args.base,
                  "head": head + ("+dirty" if dirty else ""), "set": both, "head_set": extra, "steps": args.steps,
                  "rounds": args.rounds}
        samples = base_dir / "sample_rubrics"
        sides = {"base": (base_dir, both), "head": (ROOT, {**both, **extra})}
        rounds: dict[str, list[dict]] = {"base": [], "head": []}
        for i in range(args.rounds):
            for side in ("base", "head") if i % 2 == 0 else ("head", "base"):
                code, keys = sides[side]
                rounds[side].append(run_round(code, round_config(code, samples, args.steps, keys), work,
                                              f"{side}{i}"))
        for side, runs in rounds.items():
            result[f"{side}_round"] = runs[0] if len(runs) == 1 else mean_round(runs)
        for side, code in (("base", base_dir), ("head", ROOT)):
            config = round_config(code, samples, args.steps, {})
            result[f"{side}_preset"] = {k: config.get(k) for k in PRESET_KEYS}
    base_s = result["base_round"]["seconds_per_step"]["time/step_s"]
    head_s = result["head_round"]["seconds_per_step"]["time/step_s"]
    result["speedup"] = round(base_s / head_s, 2)
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
