"""Run directories: create, launch, watch and stop distillation rounds (DESIGN §2).

    runs/<run-id>/
      config.yaml     frozen copy of the round config, the rubric's content inlined, `tasks: tasks.jsonl`
      tasks.jsonl     frozen copy of the task set (a changed task file never changes an old run)
      reviewed.jsonl  frozen copy of the config's reviewed_chains (the review export), when it names one
      .lock           held (flock) by the one process training the run: pid, host, start time
      status.json     {"status": queued|running|done|failed|stopped, "pid", "step", "steps", "error", "updated"}
      metrics.jsonl   one flushed JSON line per step (train/loss, criterion/<id>, eval/total, ...)
      samples.jsonl   every step's chains with their scores (kind train), and evaluation chains (kind eval)
      adapter/        the latest LoRA checkpoint (peft format) + training state for exact resume
      log.txt         human-readable log, the process's stdout/stderr included
      eval.json       written by `rcsd eval` / evaluate_run
      eval-status.json  the last detached evaluation job: {"status": queued|running|done|failed, "pid",
                      "error", "updated", ...}; absent in runs never evaluated from the studio
      eval-log.txt    that job's stdout/stderr

    run_dir = create_run(config, "runs")
    pid = launch_round(run_dir)                  # a detached `python -m rcsd_core.training` process
    read_status(run_dir)["status"]; read_metrics(run_dir)  # what the studio polls
    request_stop(run_dir)                        # the round finishes its step, checkpoints, stops
    pid = launch_evaluation(run_dir, limit=20)   # a detached `python -m rcsd_core.evaluation` process
    read_eval_status(run_dir)                    # None, or the job's status (a dead pid reads as failed)

Creation is exclusive: the run is assembled in a hidden staging folder and renamed into place,
which fails when the run directory already exists with anything in it, so two `rcsd train
--run-dir D` at once cannot both create D. One process owns a run at a time: the training
process holds `RunLock(run_dir)` for the whole round (see its docstring); `launch_round` and
`rcsd train --resume` refuse a run whose lock is held, and `lock_holder` says who holds it.

Writers are the training process only (rank 0); readers never lock. Status writes are atomic;
metric lines are appended and flushed, and readers skip a half-written last line. A status that
says `running` while its process is gone is reported as `failed`, so a killed round never looks
alive. No torch import here: the studio's pages call these functions.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from rcsd_core.contracts.config import MAX_CONFIG_BYTES, RoundConfig, config_from_data
from rcsd_core.contracts.names import check_name
from rcsd_core.errors import InputError
from rcsd_core.files import atomic_write_text, parse_yaml, read_jsonl, read_text, utc_now, utc_stamp
from rcsd_core.contracts.rubric import checked_rubric_yaml, load_rubric, rubric_from_data

STATUSES = ("queued", "running", "done", "failed", "stopped")
CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
LOG_FILE = "log.txt"
STOP_FILE = "STOP"
ADAPTER_DIR = "adapter"
EVAL_FILE = "eval.json"
EVAL_STATUS_FILE = "eval-status.json"
EVAL_LOG_FILE = "eval-log.txt"
EVAL_STATUSES = ("queued", "running", "done", "failed")
TASKS_FILE = "tasks.jsonl"
REVIEWED_FILE = "reviewed.jsonl"  # frozen copy of the config's reviewed_chains (human verdicts), when named
LOCK_FILE = ".lock"


def now() -> str:
    return utc_now()


# ---------------------------------------------------------------------------- creating


def new_run_id(config: RoundConfig) -> str:
    return f"{utc_stamp()}-{config.method.replace('_', '-')}-{secrets.token_hex(2)}"


def freeze_config(config: RoundConfig, run_dir: str | Path | None = None) -> RoundConfig:
    """The config with the rubric's content inlined and the task set validated.

    With `run_dir`, the task file is copied to `<run_dir>/tasks.jsonl` and the frozen config
    points at that copy (`tasks: tasks.jsonl`, resolved against the run directory when read back),
    so resuming or evaluating the run never reads a task file changed since. The copy is what is
    validated: what was checked is exactly what the run will read. Without `run_dir`, the tasks
    path is only made absolute.
    """
    from rcsd_core.contracts.tasks import check_task_rubrics, load_tasks

    rubric = load_rubric(config.rubric) if isinstance(config.rubric, str) else rubric_from_data(config.rubric)
    tasks_path = Path(config.tasks).expanduser().resolve()
    if run_dir is None:
        tasks = load_tasks(tasks_path)  # refuses a bad file now rather than in the background process
        frozen_tasks = str(tasks_path)
    else:
        copy = atomic_write_text(Path(run_dir) / TASKS_FILE, read_text(tasks_path))
        try:
            tasks = load_tasks(copy)
        except InputError as exc:   # name the user's file, not the copy
            raise InputError(exc.message, source=tasks_path, line=exc.line, field=exc.field) from None
        frozen_tasks = TASKS_FILE
    check_task_rubrics(rubric, tasks, source=tasks_path)  # a criterion id clash: refused before the round
    if not any((t.split or "train") == "train" for t in tasks):
        raise InputError("no train tasks (split 'train' or no split)", source=tasks_path, field="split")
    if config.method == "opsd" and not any(t.reference for t in tasks if (t.split or "train") == "train"):
        raise InputError("method 'opsd' needs tasks with a reference answer", source=tasks_path, field="reference")
    rubric_data = parse_yaml(checked_rubric_yaml(rubric), source=f"rubric {rubric.name}")
    update = {"rubric": rubric_data, "tasks": frozen_tasks}
    if config.reviewed_chains:  # human verdicts frozen like the tasks: a later review never changes this run
        reviewed_path = Path(config.reviewed_chains).expanduser().resolve()
        text = read_text(reviewed_path)
        if run_dir is None:
            update["reviewed_chains"] = str(reviewed_path)
        else:
            atomic_write_text(Path(run_dir) / REVIEWED_FILE, text)
            update["reviewed_chains"] = REVIEWED_FILE
    return config.model_copy(update=update)


def create_run(config: RoundConfig, runs_root: str | Path, run_id: str | None = None) -> Path:
    """A new run directory with config.yaml (frozen, rubric inlined), tasks.jsonl and status `queued`.

    Exclusive and atomic: everything is written to a hidden staging folder beside it, which is
    then renamed to `<runs_root>/<run_id>`. The rename fails when that folder exists and is not
    empty, so of two concurrent creations of one run id exactly one succeeds; the other gets
    InputError("a run with this id already exists") and leaves nothing behind.
    """
    run_id = check_name(run_id or new_run_id(config), "run")
    root = Path(runs_root)
    run_dir = root / run_id
    if (run_dir / CONFIG_FILE).exists() or (run_dir.exists() and not _empty_dir(run_dir)):
        raise InputError("a run with this id already exists", source=run_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_id}.", suffix=".creating", dir=root))
    try:
        frozen = freeze_config(config, staging)
        rubric_source = config.rubric if isinstance(config.rubric, str) else None
        header = (f"# rcsd round config, frozen at {now()}\n"
                  + (f"# rubric read from {_one_line(rubric_source)}\n" if rubric_source else "")
                  + f"# tasks copied from {_one_line(str(Path(config.tasks).expanduser().resolve()))}\n")
        atomic_write_text(staging / CONFIG_FILE, header + frozen.to_yaml())
        write_status(staging, "queued", step=0, steps=config.steps, created=now())
        try:
            os.rename(staging, run_dir)   # atomic; refuses an existing non-empty run_dir
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise InputError("a run with this id already exists", source=run_dir) from None
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return run_dir


def load_run_config(run_dir: str | Path) -> RoundConfig:
    """The frozen config of a run, its task set resolved to the run's own copy.

    Runs frozen before task sets were copied name an absolute tasks path: that is used as is.
    A relative tasks path must stay inside the run directory.
    """
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    data = parse_yaml(read_text(path, max_bytes=MAX_CONFIG_BYTES), source=path, max_bytes=MAX_CONFIG_BYTES)
    if not isinstance(data, dict):
        raise InputError("not a round config", source=path)
    # A frozen config lists every field. Runs frozen before `teacher_example_turns` existed showed
    # their worked examples inside the system text: resume and evaluate them with that teacher.
    data.setdefault("teacher_example_turns", False)
    config = config_from_data(data, source=path)
    tasks = Path(config.tasks)
    if not tasks.is_absolute():
        inside = (run_dir / tasks).resolve()
        if not inside.is_relative_to(run_dir.resolve()):
            raise InputError(f"tasks path {config.tasks!r} points outside the run directory", source=path,
                             field="tasks")
        config = config.model_copy(update={"tasks": str(inside)})
    if config.reviewed_chains and not Path(config.reviewed_chains).is_absolute():
        inside = (run_dir / config.reviewed_chains).resolve()
        if not inside.is_relative_to(run_dir.resolve()):
            raise InputError(f"reviewed_chains path {config.reviewed_chains!r} points outside the run directory",
                             source=path, field="reviewed_chains")
        config = config.model_copy(update={"reviewed_chains": str(inside)})
    return config


# ---------------------------------------------------------------------------- the run lock


class RunLocked(InputError):
    """Another live process holds the run's lock."""


_HELD: dict[str, list] = {}          # lock path -> [fd, depth]: RunLocks this process holds
_HELD_GUARD = threading.Lock()


class RunLock:
    """The one process that owns a run directory: an exclusive `flock` on `<run>/.lock`.

        with RunLock(run_dir):                 # RunLocked (an InputError) if another process holds it
            ...                                # train: status, metrics, checkpoints

        lock = RunLock(run_dir).acquire(timeout=5)   # the same without a block; lock.release() at the end

    In the round (rank 0), before anything is written to the run directory:

        with RunLock(run_dir, purpose="round"):
            ...  # setup, train, checkpoint, final status

    The training process takes it before it writes anything to the run (and, when it gets
    RunLocked, exits without touching status.json: the holder owns that) and keeps it for the
    whole round; with several processes, rank 0 holds it. The lock file records the holder's pid,
    host, the process's start time and `purpose`, which `lock_holder` reads for `rcsd status` and
    the studio without locking.

    Stale locks: the kernel drops a flock when its process exits, however it exits (crash,
    SIGKILL, out of memory), so the lock of a dead pid is never held and the next `acquire` simply
    gets it and overwrites the stale record. The file is never deleted (deleting it would let two
    processes each lock "their own" file). Within one process the lock is re-entrant (the CLI and
    the round may both take it); the descriptor is not inherited by child processes.
    """

    def __init__(self, run_dir: str | Path, *, purpose: str = "training"):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.purpose = purpose
        self._key = str(self.path.resolve())
        self._held = False

    def acquire(self, timeout: float = 1.0) -> "RunLock":
        """Take the lock, retrying for up to `timeout` seconds; RunLocked when it stays held.

        The default second rides out a reader's momentary probe (`is_locked`) and nothing more.
        """
        if self._held:
            return self
        if not (self.run_dir / CONFIG_FILE).is_file():
            raise InputError("not a run directory (no config.yaml)", source=self.run_dir)
        with _HELD_GUARD:
            if self._key in _HELD:           # this process already owns the run
                _HELD[self._key][1] += 1
                self._held = True
                return self
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            deadline = time.monotonic() + max(timeout, 0.0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        os.close(fd)
                        raise RunLocked(_held_message(self.run_dir), source=self.run_dir) from None
                    time.sleep(0.05)
            record = {"pid": os.getpid(), "host": socket.gethostname(), "started": now(),
                      "process_start": _process_start(os.getpid()), "purpose": self.purpose}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            os.fsync(fd)
            _HELD[self._key] = [fd, 1]
            self._held = True
        return self

    def release(self) -> None:
        """Give the lock back (the record is cleared); a no-op when not held."""
        if not self._held:
            return
        with _HELD_GUARD:
            entry = _HELD[self._key]
            entry[1] -= 1
            if entry[1] == 0:
                del _HELD[self._key]
                try:
                    os.ftruncate(entry[0], 0)
                finally:
                    os.close(entry[0])   # closing the last descriptor drops the flock
            self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(run_dir: str | Path) -> dict | None:
    """Who holds the run's lock, from its record: {pid, host, started, purpose}; None when free.

    Readers never take the lock. A record whose pid is dead on this host, or now names another
    process (its start time differs), is stale and reads as None.
    """
    try:
        record = json.loads((Path(run_dir) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    if record.get("host") == socket.gethostname():
        if not pid_alive(record["pid"]):
            return None
        start = _process_start(record["pid"])
        if record.get("process_start") is not None and start is not None and start != record["process_start"]:
            return None
    return {k: record.get(k) for k in ("pid", "host", "started", "purpose")}


def is_locked(run_dir: str | Path) -> bool:
    """True when some process holds the run's flock (probed without writing or keeping it)."""
    path = Path(run_dir) / LOCK_FILE
    with _HELD_GUARD:
        if str(path.resolve()) in _HELD:
            return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)   # also drops the probe's shared lock
    return False


def ensure_unlocked(run_dir: str | Path) -> None:
    """InputError naming the holder when another process owns the run (launching, resuming)."""
    if is_locked(run_dir):
        raise RunLocked(_held_message(run_dir), source=run_dir)


def _held_message(run_dir: str | Path) -> str:
    holder = lock_holder(run_dir)
    who = (f"pid {holder['pid']} on {holder['host']} ({holder['purpose']}, since {holder['started']})"
           if holder else "another process")
    return f"the run is in use by {who}; wait for it to finish or stop it first (rcsd status --run-dir ...)"


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _one_line(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")


# ---------------------------------------------------------------------------- status


def write_status(run_dir: str | Path, status: str, **fields: Any) -> dict:
    """Atomically replace status.json, keeping fields of the previous status not given here."""
    return _update_status(Path(run_dir) / STATUS_FILE, status, STATUSES, fields)


def _update_status(path: Path, status: str, allowed: tuple[str, ...], fields: dict[str, Any]) -> dict:
    """A job's status file (a round's or an evaluation's) replaced atomically, earlier fields kept."""
    if status not in allowed:
        raise ValueError(f"unknown status {status!r} for {path.name}")
    record = {**(_read_json(path) or {}), **fields, "status": status, "updated": now()}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def _gone(record: dict) -> bool:
    """Whether a queued or running job's process has ended without saying so (killed or crashed)."""
    pid = record.get("pid")
    return record.get("status") in ("queued", "running") and bool(pid) and not pid_alive(pid)


def read_status(run_dir: str | Path) -> dict:
    """status.json, with a `running` (or launched `queued`) round whose process is gone shown as failed."""
    run_dir = Path(run_dir)
    record = _read_json(run_dir / STATUS_FILE)
    if record is None:
        return {"status": "failed" if (run_dir / CONFIG_FILE).exists() else "missing", "pid": None, "step": 0,
                "error": "no status.json", "updated": None}
    record.setdefault("error", None)
    record.setdefault("step", 0)
    if _gone(record):
        reason = "process exited before starting the round" if record["status"] == "queued" else \
            "process is gone (killed or crashed)"
        record["error"] = f"{reason}; pid {record['pid']}" + (f"; last error: {record['error']}" if record["error"]
                                                              else "")
        record["status"] = "failed"
    return record


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
            return state not in ("Z", "X")
        except (OSError, IndexError):
            return True
    return True


# ---------------------------------------------------------------------------- launching and stopping


def train_command(run_dir: str | Path, *, resume: bool = False) -> list[str]:
    command = [sys.executable, "-m", "rcsd_core.training", "--run-dir", str(Path(run_dir).resolve())]
    return command + (["--resume"] if resume else [])


def launch_round(run_dir: str | Path, *, resume: bool = False, env: dict[str, str] | None = None) -> int:
    """Start the round in its own session (it outlives the app), output to log.txt; returns its pid."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise InputError("not a run directory (no config.yaml)", source=run_dir)
    ensure_unlocked(run_dir)
    current = read_status(run_dir)
    if current["status"] == "running":
        raise InputError(f"the round is already running (pid {current.get('pid')})", source=run_dir)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    pid = spawn_detached(train_command(run_dir, resume=resume), run_dir / LOG_FILE, env=env)
    if read_status(run_dir)["status"] != "running":  # the child may (rarely) already have started
        write_status(run_dir, "queued", pid=pid, error=None)
    return pid


def spawn_detached(command: list[str], log_path: str | Path, *, env: dict[str, str] | None = None) -> int:
    """Start `command` in its own session (it outlives the app), stdout/stderr appended to log_path; its pid.

    Rounds and evaluations are both launched through here.
    """
    log = open(log_path, "a", encoding="utf-8")
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=os.getcwd(),
                                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})
    finally:
        log.close()
    # Reap the child when it ends so it never lingers as a zombie of a long-lived app process.
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc.pid


def request_stop(run_dir: str | Path) -> bool:
    """Ask a round to stop after its current step: a STOP file, and SIGTERM to its running process.

    The round deletes the STOP file when it stops; launching a round also clears a stale one.
    Returns True when a live process was signalled.
    """
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / STOP_FILE, now() + "\n")
    status = read_status(run_dir)
    pid = status.get("pid")
    # A queued process may not have its handler yet (SIGTERM would kill it): the STOP file reaches it.
    if status["status"] == "running" and pid and pid_alive(pid):
        try:
            os.kill(int(pid), signal.SIGTERM)
            return True
        except ProcessLookupError:
            return False
    return False


# ---------------------------------------------------------------------------- evaluation jobs


def write_eval_status(run_dir: str | Path, status: str, **fields: Any) -> dict:
    """Atomically replace eval-status.json, keeping fields of the previous status not given here."""
    return _update_status(Path(run_dir) / EVAL_STATUS_FILE, status, EVAL_STATUSES, fields)


def read_eval_status(run_dir: str | Path) -> dict | None:
    """The last evaluation job's status (None when none was launched); a dead pid reads as failed."""
    record = _read_json(Path(run_dir) / EVAL_STATUS_FILE)
    if record is None:
        return None
    record.setdefault("error", None)
    if _gone(record):
        record["error"] = f"the evaluation process is gone (killed or crashed); pid {record['pid']}"
        record["status"] = "failed"
    return record


def eval_command(run_dir: str | Path, *, limit: int | None = None, samples: int | None = None,
                 seed: int = 0) -> list[str]:
    command = [sys.executable, "-m", "rcsd_core.evaluation", "--run-dir", str(Path(run_dir).resolve()),
               "--seed", str(int(seed))]
    return (command + (["--limit", str(int(limit))] if limit else [])
            + (["--samples", str(int(samples))] if samples else []))


def launch_evaluation(run_dir: str | Path, *, limit: int | None = None, samples: int | None = None, seed: int = 0,
                      env: dict[str, str] | None = None) -> int:
    """Start `python -m rcsd_core.evaluation` on a finished or stopped run, detached; returns its pid.

    The job writes eval.json when it is done, and eval-status.json as it goes.
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise InputError("not a run directory (no config.yaml)", source=run_dir)
    round_status = read_status(run_dir)["status"]
    if round_status in ("queued", "running"):
        raise InputError(f"the round is {round_status}: evaluate it once it is done or stopped", source=run_dir)
    job = read_eval_status(run_dir)
    if job and job["status"] in ("queued", "running"):
        raise InputError(f"an evaluation is already {job['status']} (pid {job.get('pid')})", source=run_dir)
    (run_dir / EVAL_STATUS_FILE).unlink(missing_ok=True)  # a new job: no field of the last one carries over
    write_eval_status(run_dir, "queued", pid=None, error=None, created=now(), limit=limit, samples=samples,
                      seed=seed)
    try:
        pid = spawn_detached(eval_command(run_dir, limit=limit, samples=samples, seed=seed),
                             run_dir / EVAL_LOG_FILE, env=env)
    except OSError as exc:
        write_eval_status(run_dir, "failed", error=f"could not start the evaluation: {exc}")
        raise
    if (read_eval_status(run_dir) or {}).get("status") == "queued":  # the child may already have started
        write_eval_status(run_dir, "queued", pid=pid)
    return pid


# ---------------------------------------------------------------------------- reading


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """metrics.jsonl as a frame, one row per line (a half-written last line is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return pd.DataFrame(columns=["step"])
    records = read_jsonl(path, tolerate_partial_tail=True)
    if not records:
        return pd.DataFrame(columns=["step"])
    return pd.DataFrame.from_records(records)


def read_samples(run_dir: str | Path) -> list[dict]:
    """samples.jsonl: each step's chains (step, task_id, sample, text, scores, total)."""
    path = Path(run_dir) / SAMPLES_FILE
    return read_jsonl(path, tolerate_partial_tail=True) if path.exists() else []


def tail_log(run_dir: str | Path, lines: int = 50, *, name: str = LOG_FILE) -> str:
    """The last `lines` lines of log.txt, or of another log of the run (`name`); '' when there is none."""
    path = Path(run_dir) / name
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 256 * 1024))
        data = f.read()
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def read_eval(run_dir: str | Path) -> dict | None:
    return _read_json(Path(run_dir) / EVAL_FILE)


def list_runs(runs_root: str | Path) -> pd.DataFrame:
    """One row per run directory under runs_root, newest first: id, status, method, model, step, steps, created."""
    columns = ["id", "status", "method", "model", "step", "steps", "created"]
    root = Path(runs_root)
    rows = []
    if root.is_dir():
        for run_dir in root.iterdir():
            if run_dir.name.startswith(".") or not (run_dir / CONFIG_FILE).is_file():
                continue   # hidden: a run being created (staging)
            status = read_status(run_dir)
            try:
                config = parse_yaml(read_text(run_dir / CONFIG_FILE, max_bytes=MAX_CONFIG_BYTES),
                                    source=run_dir / CONFIG_FILE, max_bytes=MAX_CONFIG_BYTES)
            except InputError:
                config = {}
            config = config if isinstance(config, dict) else {}
            rows.append({"id": run_dir.name, "status": status.get("status"), "method": config.get("method"),
                         "model": config.get("model"), "step": status.get("step", 0),
                         "steps": status.get("steps", config.get("steps")),
                         "created": status.get("created") or _mtime(run_dir)})
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("created", ascending=False, ignore_index=True) if len(frame) else frame


# ---------------------------------------------------------------------------- helpers


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _mtime(path: Path) -> str:
    return _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
