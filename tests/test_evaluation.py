"""Evaluation: before/after comparison paired by prompt, and evaluate_run on a finished tiny round."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import config_from_data, resolve_paths
from rcsd_core.errors import InputError
from rcsd_core.evaluation.before_after import compare_eval, evaluate_run
from rcsd_core.contracts.rubric import load_rubric

BASE = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
        "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 1, "prompts_per_step": 2,
        "samples_per_prompt": 2, "max_new_tokens": 8, "seed": 0, "eval_every": 0, "eval_tasks": 2,
        "eval_samples": 1, "checkpoint_every": 0, "threads": 1, "device": "cpu"}


def record(task_id, fmt, total):
    return {"task_id": task_id, "scores": {"final-answer-line": fmt, "correct-answer": None}, "total": total}


def test_compare_eval_pairs_by_prompt_and_averages_samples():
    rubric = load_rubric("sample_rubrics/arithmetic.yaml")
    before = [record(f"t{i}", 0.0, 0.2) for i in range(20) for _ in range(2)]
    after = [record(f"t{i}", 1.0 if i % 2 else 0.0, 0.3) for i in range(20) for _ in range(2)]
    table = compare_eval(before, after, rubric).set_index("criterion")
    row = table.loc["final-answer-line"]
    assert row.before == 0.0 and row.after == 0.5 and row["diff"] == 0.5 and row.prompts == 20
    assert 0 < row.ci_low < 0.5 < row.ci_high <= 1 and row.significant
    total = table.loc["total"]
    assert abs(total["diff"] - 0.1) < 1e-9 and total.significant  # same gain on every prompt: a tight CI
    assert table.loc["correct-answer"].isna()["diff"]  # never scored: no difference claimed
    assert not table.loc["correct-answer"].significant
    assert list(table.index) == [c.id for c in rubric.criteria] + ["total"]


def test_evaluate_run_scores_before_and_after_and_writes_eval_json(tmp_path):
    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "runs", run_id="r")
    with pytest.raises(InputError, match="no adapter"):
        evaluate_run(run_dir)
    from rcsd_core.training.round import train_round

    train_round(run_dir)
    result = evaluate_run(run_dir, tasks=3, samples=2, seed=0)
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["total"]["criterion"] == "total" and saved["eval_prompts"] == 3 and saved["samples"] == 2
    assert [c["criterion"] for c in result["criteria"]] == [c.id for c in load_rubric(BASE["rubric"]).criteria]
    for row in result["criteria"] + [result["total"]]:
        assert {"before", "after", "diff", "ci_low", "ci_high"} <= set(row)
    assert result["divergence"]["before"] >= 0 and result["divergence"]["after"] >= 0
    assert len(result["prompts"]) == 3 and all(len(p["before"]) == 2 == len(p["after"]) for p in result["prompts"])
    assert result["adapter_step"] == 1
    again = evaluate_run(run_dir, tasks=3, samples=2, seed=0)  # fixed seed: the same texts
    assert again["prompts"][0]["before"] == result["prompts"][0]["before"]


def test_cli_eval_prints_the_table(tmp_path, capsys):
    from rcsd_core.cli import main
    from rcsd_core.training.round import train_round

    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "runs", run_id="r")
    train_round(run_dir)
    assert main(["eval", "--run-dir", str(run_dir), "--tasks", "2", "--samples", "1"]) == 0
    out = capsys.readouterr().out
    assert "final-answer-line" in out and "total" in out and "held-out forward_kl" in out
    assert json.loads((run_dir / "eval.json").read_text())["eval_prompts"] == 2


def test_module_entry_point_evaluates_a_run_and_reports_through_its_status_file(tmp_path):
    """`python -m rcsd_core.evaluation` end to end, as the studio launches it: eval.json and eval-status.json."""
    from rcsd_core.training.round import train_round

    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "runs", run_id="r")
    command = [sys.executable, "-m", "rcsd_core.evaluation", "--run-dir", str(run_dir), "--limit", "2", "--samples",
               "1", "--seed", "3"]
    repo = str(Path(__file__).resolve().parent.parent)   # this checkout's rcsd_core, wherever pytest runs from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    before = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert before.returncode == 2 and "no adapter" in before.stderr      # bad input: one line, exit 2
    assert runs.read_eval_status(run_dir)["status"] == "failed"

    train_round(run_dir)
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr
    status = runs.read_eval_status(run_dir)
    assert status["status"] == "done" and status["error"] is None and status["eval_prompts"] == 2
    saved = json.loads((run_dir / "eval.json").read_text())
    assert saved["eval_prompts"] == 2 and saved["samples"] == 1 and saved["seed"] == 3
    assert status["total_after"] == saved["total"]["after"]

    bad = subprocess.run([sys.executable, "-m", "rcsd_core.evaluation", "--run-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "not a run directory" in bad.stderr
