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


# ---------------------------------------------------------------------------- frozen task sets


def test_task_set_is_frozen_into_the_run(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    original = (runs.Path("sample_rubrics/arithmetic.tasks.jsonl")).read_text(encoding="utf-8")
    tasks.write_text(original, encoding="utf-8")
    run_dir = make_run(tmp_path, tasks=str(tasks))
    assert (run_dir / "tasks.jsonl").read_text(encoding="utf-8") == original
    tasks.write_text('{"id": "changed", "prompt": "new"}\n', encoding="utf-8")   # edited after the run started
    tasks_of_run = runs.load_run_config(run_dir).tasks
    assert tasks_of_run == str((run_dir / "tasks.jsonl").resolve())
    assert (run_dir / "tasks.jsonl").read_text(encoding="utf-8") == original
    # the run directory can move (copied from elsewhere): the frozen path is relative to it
    moved = tmp_path / "elsewhere" / "r1"
    moved.parent.mkdir()
    run_dir.rename(moved)
    assert runs.load_run_config(moved).tasks == str((moved / "tasks.jsonl").resolve())


def test_old_runs_pointing_at_a_tasks_path_still_load(tmp_path):
    run_dir = make_run(tmp_path)
    frozen = yaml.safe_load((run_dir / "config.yaml").read_text())
    frozen["tasks"] = str(runs.Path("sample_rubrics/arithmetic.tasks.jsonl").resolve())   # before task freezing
    (run_dir / "config.yaml").write_text(yaml.safe_dump(frozen))
    assert runs.load_run_config(run_dir).tasks == frozen["tasks"]
    frozen["tasks"] = "../../outside.jsonl"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(frozen))
    with pytest.raises(InputError, match="outside the run directory"):
        runs.load_run_config(run_dir)


def test_a_bad_task_file_names_the_users_file_and_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    with pytest.raises(InputError) as info:
        make_run(tmp_path, tasks=str(bad))
    assert info.value.source == str(bad) and info.value.line == 2
    assert not any((tmp_path / "runs").iterdir())                 # no staging folder left behind


def test_run_configs_from_elsewhere_are_parsed_safely(tmp_path):
    run_dir = make_run(tmp_path)
    text = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(text.replace("model: tiny-random", "model: &m tiny-random\nx: *m"))
    with pytest.raises(InputError, match="anchors and aliases"):
        runs.load_run_config(run_dir)
    frame = runs.list_runs(tmp_path / "runs")            # the listing survives it
    assert list(frame["id"]) == ["r1"] and frame["method"].isna().all()


# ---------------------------------------------------------------------------- exclusive creation


def test_concurrent_creation_of_one_run_id_lets_exactly_one_win(tmp_path, monkeypatch):
    """Both creators pass every check before either writes (the barrier): one must still lose."""
    import threading

    barrier = threading.Barrier(2, timeout=10)
    freeze = runs.freeze_config

    def slow_freeze(config, run_dir=None):
        frozen = freeze(config, run_dir)
        barrier.wait()
        return frozen

    monkeypatch.setattr(runs, "freeze_config", slow_freeze)
    outcomes: list = []

    def create():
        try:
            outcomes.append(make_run(tmp_path, run_id="same"))
        except InputError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    errors = [o for o in outcomes if isinstance(o, InputError)]
    assert len(outcomes) == 2 and len(errors) == 1 and "already exists" in errors[0].message
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["same"]      # no staging folder left
    assert runs.load_run_config(tmp_path / "runs" / "same").steps == 3


def test_an_existing_empty_folder_can_become_the_run_but_not_a_used_one(tmp_path):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    assert (make_run(tmp_path, run_id="empty") / "config.yaml").is_file()
    (tmp_path / "runs" / "used").mkdir()
    (tmp_path / "runs" / "used" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists"):
        make_run(tmp_path, run_id="used")
    assert [p.name for p in (tmp_path / "runs" / "used").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("run_id", ["ok\n", "a\x00b", "x" * 300, "../up", ".hidden", "a/b", "\n"])
def test_bad_run_ids_are_refused(tmp_path, run_id):
    with pytest.raises(InputError, match="invalid run id"):
        make_run(tmp_path, run_id=run_id)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# ---------------------------------------------------------------------------- the run lock

HOLD = """
import sys, time
from rcsd_core.contracts.runs import RunLock
with RunLock(sys.argv[1], purpose="test holder"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    """A run directory and a separate process holding its lock (killed at the end)."""
    import sys

    run_dir = make_run(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield run_dir, proc
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_is_exclusive_and_says_who_holds_it(holder):
    run_dir, proc = holder
    assert runs.is_locked(run_dir)
    who = runs.lock_holder(run_dir)
    assert who["pid"] == proc.pid and who["purpose"] == "test holder" and who["started"]
    with pytest.raises(runs.RunLocked, match=f"in use by pid {proc.pid}"):
        runs.RunLock(run_dir).acquire(timeout=0.2)
    with pytest.raises(InputError, match=f"in use by pid {proc.pid}"):
        runs.launch_round(run_dir)
    assert not (run_dir / "log.txt").exists()       # refused before starting anything


def test_a_dead_holders_lock_is_broken_safely(holder):
    run_dir, proc = holder
    proc.kill()
    proc.wait()
    assert not runs.is_locked(run_dir)               # the kernel dropped the flock with the process
    assert runs.lock_holder(run_dir) is None         # the record's pid is dead: stale
    assert json.loads((run_dir / ".lock").read_text())["pid"] == proc.pid
    with runs.RunLock(run_dir, purpose="next") as lock:
        assert lock.held and runs.lock_holder(run_dir)["pid"] == os.getpid()
        with runs.RunLock(run_dir):                  # re-entrant within the owning process
            pass
        assert runs.lock_holder(run_dir)["purpose"] == "next"
    assert runs.lock_holder(run_dir) is None and not runs.is_locked(run_dir)


def test_a_recycled_pid_does_not_look_like_the_holder(tmp_path):
    run_dir = make_run(tmp_path)
    with runs.RunLock(run_dir):
        record = json.loads((run_dir / ".lock").read_text())
    record["process_start"] = (record["process_start"] or 0) + 1     # same pid, another process
    (run_dir / ".lock").write_text(json.dumps(record))
    assert runs.lock_holder(run_dir) is None


def test_rcsd_train_resume_and_status_see_the_lock(holder, capsys):
    from rcsd_core.cli import main

    run_dir, proc = holder
    assert main(["train", "--run-dir", str(run_dir), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"in use by pid {proc.pid}" in err[0]
    assert main(["train", "--run-dir", str(run_dir), "--resume", "--detach"]) == 2
    capsys.readouterr()
    main(["status", "--run-dir", str(run_dir)])
    status = json.loads(capsys.readouterr().out)
    assert status["lock"]["pid"] == proc.pid and status["lock"]["purpose"] == "test holder"
