"""Run directories: creation, status (a dead process reads as failed), tolerant readers, stop requests."""

import json
import os
import subprocess

import pytest
import yaml

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import config_from_data
from rcsd_core.errors import InputError
from rcsd_core.contracts.rubric import load_rubric, rubric_from_data

MINIMAL = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
           "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 3, "prompts_per_step": 2,
           "samples_per_prompt": 2, "max_new_tokens": 8, "seed": 0}


def make_run(tmp_path, run_id="r1", **overrides):
    from rcsd_core.contracts.config import resolve_paths

    return runs.create_run(resolve_paths(config_from_data({**MINIMAL, **overrides})), tmp_path / "runs",
                           run_id=run_id)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_create_run_freezes_config_with_rubric_content(tmp_path):
    run_dir = make_run(tmp_path)
    frozen = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert isinstance(frozen["rubric"], dict)
    assert rubric_from_data(frozen["rubric"]).version == load_rubric("sample_rubrics/arithmetic.yaml").version
    assert frozen["tasks"] == "tasks.jsonl"   # the run's own copy (see test_task_set_is_frozen_into_the_run)
    assert runs.load_run_config(run_dir).steps == 3
    status = runs.read_status(run_dir)
    assert status["status"] == "queued" and status["step"] == 0 and status["steps"] == 3


def test_a_run_frozen_before_example_turns_keeps_its_teacher_layout(tmp_path):
    run_dir = make_run(tmp_path)
    assert runs.load_run_config(run_dir).teacher_example_turns is True  # frozen with the field: as written
    frozen = yaml.safe_load((run_dir / "config.yaml").read_text())
    del frozen["teacher_example_turns"]  # what a run frozen before the field existed looks like
    (run_dir / "config.yaml").write_text(yaml.safe_dump(frozen))
    assert runs.load_run_config(run_dir).teacher_example_turns is False


def test_create_run_refuses_bad_input_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncriteria: []\n")
    with pytest.raises(InputError):
        make_run(tmp_path, rubric=str(bad))
    with pytest.raises(InputError, match="file not found"):
        make_run(tmp_path, run_id="r2", tasks=str(tmp_path / "missing.jsonl"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    make_run(tmp_path, run_id="same")
    with pytest.raises(InputError, match="already exists"):
        make_run(tmp_path, run_id="same")


def test_running_status_with_a_dead_pid_reads_as_failed(tmp_path):
    run_dir = make_run(tmp_path)
    runs.write_status(run_dir, "running", pid=dead_pid(), step=2, error="CUDA out of memory")
    status = runs.read_status(run_dir)
    assert status["status"] == "failed"
    assert "process is gone" in status["error"] and "CUDA out of memory" in status["error"]
    runs.write_status(run_dir, "running", pid=os.getpid(), error=None)
    assert runs.read_status(run_dir)["status"] == "running"


def test_status_writes_are_atomic_and_merge(tmp_path):
    run_dir = make_run(tmp_path)
    runs.write_status(run_dir, "running", pid=os.getpid(), step=1)
    runs.write_status(run_dir, "done", step=3)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "done" and status["pid"] == os.getpid() and status["steps"] == 3
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError):
        runs.write_status(run_dir, "exploded")


def test_read_metrics_skips_a_half_written_last_line(tmp_path):
    run_dir = make_run(tmp_path)
    lines = [json.dumps({"step": 1, "train/loss": 0.5}), json.dumps({"step": 2, "train/loss": 0.4})]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n" + '{"step": 3, "train/lo')
    frame = runs.read_metrics(run_dir)
    assert list(frame["step"]) == [1, 2]
    (run_dir / "samples.jsonl").write_text(json.dumps({"step": 1, "text": "a"}) + "\n" + '{"st')
    assert runs.read_samples(run_dir) == [{"step": 1, "text": "a"}]


def test_empty_run_reads(tmp_path):
    run_dir = make_run(tmp_path)
    assert runs.read_metrics(run_dir).empty and runs.read_samples(run_dir) == []
    assert runs.tail_log(run_dir) == ""


def test_list_runs_and_tail_log(tmp_path):
    a = make_run(tmp_path, run_id="a")
    make_run(tmp_path, run_id="b", method="opsd")
    (tmp_path / "runs" / "not-a-run").mkdir()
    frame = runs.list_runs(tmp_path / "runs")
    assert set(frame["id"]) == {"a", "b"}
    assert list(frame.columns) == ["id", "status", "method", "model", "step", "steps", "created"]
    assert set(frame["method"]) == {"rcsd", "opsd"}
    (a / "log.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    assert runs.tail_log(a, lines=3) == "line 97\nline 98\nline 99"
    assert runs.list_runs(tmp_path / "nowhere").empty


def test_request_stop_writes_stop_file_and_signals_a_live_process(tmp_path):
    run_dir = make_run(tmp_path)
    assert runs.request_stop(run_dir) is False  # queued, no process
    assert (run_dir / "STOP").exists()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        runs.write_status(run_dir, "running", pid=sleeper.pid)
        assert runs.request_stop(run_dir) is True
        assert sleeper.wait(timeout=10) == -15
    finally:
        sleeper.kill()
