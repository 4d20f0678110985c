"""Detached jobs: the evaluation job's status file, its launcher, and the one spawner rounds share.

No model is loaded here: the evaluation that really runs is in test_evaluation.py (the module
entry point) and test_pages.py (launched from the Results page).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import config_from_data, resolve_paths
from rcsd_core.errors import InputError
from rcsd_core.studio import jobs

BASE = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
        "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 1, "prompts_per_step": 1,
        "samples_per_prompt": 2, "max_new_tokens": 8, "seed": 0, "threads": 1, "device": "cpu"}


@pytest.fixture()
def run_dir(tmp_path):
    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "runs", run_id="r")
    runs.write_status(run_dir, "done", step=1)
    return run_dir


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_an_old_run_has_no_evaluation_status(run_dir):
    assert runs.read_eval_status(run_dir) is None and jobs.evaluation_status(run_dir) is None


def test_evaluation_status_is_written_atomically_and_keeps_earlier_fields(run_dir):
    runs.write_eval_status(run_dir, "queued", pid=None, limit=3)
    record = runs.write_eval_status(run_dir, "done", seconds=1.5)
    assert record["status"] == "done" and record["limit"] == 3 and record["seconds"] == 1.5 and record["updated"]
    assert runs.read_eval_status(run_dir)["status"] == "done"
    with pytest.raises(ValueError):
        runs.write_eval_status(run_dir, "stopped")


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_dead_evaluation_process_reads_as_failed(run_dir, status):
    pid = dead_pid()
    runs.write_eval_status(run_dir, status, pid=pid)
    record = runs.read_eval_status(run_dir)
    assert record["status"] == "failed" and str(pid) in record["error"]


def test_eval_command_is_the_module_entry_point(run_dir):
    command = runs.eval_command(run_dir, limit=4, samples=2, seed=7)
    assert command[:3] == [sys.executable, "-m", "rcsd_core.evaluation"]
    assert command[command.index("--limit") + 1] == "4" and command[command.index("--seed") + 1] == "7"
    assert "--samples" not in runs.eval_command(run_dir)


def test_launch_refuses_while_the_round_or_an_evaluation_is_active(run_dir):
    runs.write_status(run_dir, "running", pid=None)
    with pytest.raises(InputError, match="the round is running"):
        jobs.launch_evaluation(run_dir)
    runs.write_status(run_dir, "done")
    runs.write_eval_status(run_dir, "running", pid=None)
    with pytest.raises(InputError, match="already running"):
        jobs.launch_evaluation(run_dir)
    with pytest.raises(InputError, match="not a run directory"):
        runs.launch_evaluation(run_dir.parent / "nothing")


def test_a_launched_evaluation_without_an_adapter_fails_with_the_reason(run_dir):
    """The job really starts (detached) and reports the run's missing adapter through its status file."""
    pid = jobs.launch_evaluation(run_dir, limit=1)
    assert pid > 0
    record = wait_for(lambda: (s := jobs.evaluation_status(run_dir)) and s["status"] == "failed" and s, timeout=120)
    assert "no adapter" in record["error"]
    assert "no adapter" in jobs.evaluation_log(run_dir)
    assert not (run_dir / runs.EVAL_FILE).exists()


def test_spawn_detached_appends_output_to_the_log(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("earlier\n")
    pid = runs.spawn_detached([sys.executable, "-c", "print('hello from the job')"], log)
    wait_for(lambda: not runs.pid_alive(pid))
    assert log.read_text() == "earlier\nhello from the job\n"


def test_evaluation_progress_reads_done_total_and_eta_from_the_status():
    from datetime import datetime, timezone

    from rcsd_core.studio.jobs import evaluation_progress

    now = datetime(2026, 1, 1, 12, 1, 0, tzinfo=timezone.utc)
    fraction, text = evaluation_progress({"started": "2026-01-01T12:00:00+00:00", "done": 20, "total": 80}, now)
    assert fraction == 0.25
    assert text == "20/80 chains (without, then with the adapter) · 1 min 00 s so far · about 3 min 00 s left"
    assert evaluation_progress({"started": "2026-01-01T12:00:30+00:00", "total": None}, now) == \
        (0.0, "loading the model · 30 s so far")
