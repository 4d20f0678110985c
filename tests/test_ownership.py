"""One process owns a run directory: the round (rank 0) and an evaluation job hold its lock throughout.

A second trainer or an evaluation started while another process holds the lock is refused before
it writes anything, and the holder's status.json is left as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import config_from_data, resolve_paths
from rcsd_core.training.round import train_round

ROOT = Path(__file__).resolve().parent.parent
BASE = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
        "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 1, "prompts_per_step": 1,
        "samples_per_prompt": 1, "max_new_tokens": 4, "seed": 0, "eval_tasks": 1, "threads": 1, "device": "cpu"}
HOLD = "import sys, time\nfrom rcsd_core.contracts.runs import RunLock\n" \
       "with RunLock(sys.argv[1], purpose='test holder'):\n    print('held', flush=True)\n    time.sleep(60)\n"


@pytest.fixture()
def held_run(tmp_path):
    """A fresh run directory whose lock another process holds."""
    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "runs", run_id="owned")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "held"
    yield run_dir
    holder.kill()
    holder.wait()


def test_a_second_trainer_is_refused_and_leaves_the_status_alone(held_run):
    before = (held_run / runs.STATUS_FILE).read_text()
    with pytest.raises(runs.RunLocked, match="test holder"):
        train_round(held_run)
    assert (held_run / runs.STATUS_FILE).read_text() == before
    assert not (held_run / runs.METRICS_FILE).exists()


def test_an_evaluation_job_is_refused_while_another_process_owns_the_run(held_run):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "rcsd_core.evaluation", "--run-dir", str(held_run)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "test holder" in done.stderr
    assert runs.read_eval_status(held_run)["status"] == "failed"


def test_the_lock_is_free_again_after_a_round(tmp_path):
    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "runs", run_id="free")
    assert train_round(run_dir)["status"] == "done"
    assert not runs.is_locked(run_dir)


def test_rcsd_eval_is_refused_while_another_process_owns_the_run(held_run, capsys):
    from rcsd_core.cli import main

    assert main(["eval", "--run-dir", str(held_run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test holder" in err
    assert not (held_run / runs.EVAL_FILE).exists()
