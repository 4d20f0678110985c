"""Detached jobs the studio starts and polls: distillation rounds and before/after evaluations.

    run_id = start_round(root, "cpu-demo", {"model": "tiny-random", "steps": 2, ...}, extra_yaml="tau: 1.0")
    stop_round(run_dir); resume_round(run_dir)
    launch_evaluation(run_dir, limit=20)       # `python -m rcsd_core.evaluation` in its own session
    evaluation_status(run_dir)                  # None (never launched) or {"status": queued|running|done|failed, ...}

Both kinds run as their own processes (rcsd_core.contracts.runs.spawn_detached): they outlive a
page rerun or an app restart, and a page re-attaches by reading the run directory. A page polls
an active job with `st.fragment(run_every=2)` and reruns once it ends.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any


from rcsd_core.contracts import runs
from rcsd_core.contracts.config import parse_config_overrides, preset_config
from rcsd_core.studio import workspace as ws

ACTIVE = ("queued", "running")


# ---------------------------------------------------------------------------- rounds


def start_round(root: str | Path, preset: str, fields: dict[str, Any], extra_yaml: str = "") -> str:
    """Create a run from a preset, the form's fields and extra config keys (YAML), and launch it; its id."""
    extra = parse_config_overrides(extra_yaml)  # safe YAML: no aliases, size-capped
    config = preset_config(preset, **{**fields, **extra})
    run_dir = runs.create_run(config, ws.runs_root(root))
    runs.launch_round(run_dir)
    return run_dir.name


def resume_round(run_dir: str | Path) -> int:
    """Continue a failed or stopped round from its last checkpoint, detached; its pid."""
    return runs.launch_round(run_dir, resume=True)


def stop_round(run_dir: str | Path) -> bool:
    """Ask a round to stop after its current step (it checkpoints first); True when a live process was told."""
    return runs.request_stop(run_dir)


def round_status(run_dir: str | Path) -> dict:
    """status.json of a run; a round whose process is gone reads as failed. An active round asked to
    stop carries `stopping: True` until it ends (its STOP file is still there)."""
    status = runs.read_status(run_dir)
    status["stopping"] = status.get("status") in ACTIVE and (Path(run_dir) / runs.STOP_FILE).exists()
    return status


def shown_status(status: dict) -> str:
    """The status word a page shows: "stopping…" between Stop and the round's end."""
    return "stopping…" if status.get("stopping") else str(status.get("status"))


def runs_table(root: str | Path):
    """runs.list_runs of the workspace, with "stopping…" for rounds asked to stop."""
    table = runs.list_runs(ws.runs_root(root))
    for i, run_id in enumerate(table["id"]):
        if table.at[i, "status"] in ACTIVE and (ws.run_dir(root, run_id) / runs.STOP_FILE).exists():
            table.at[i, "status"] = "stopping…"
    return table


def held_out_alert(run_dir: str | Path) -> str | None:
    """The held-out watch's alert for a run, from its metrics (also for runs older than the watch)."""
    from rcsd_core.files import read_jsonl
    from rcsd_core.scoring.watch import watch_alert

    path = Path(run_dir) / runs.METRICS_FILE
    return watch_alert(read_jsonl(path, tolerate_partial_tail=True)) if path.exists() else None


# ---------------------------------------------------------------------------- evaluations


def launch_evaluation(run_dir: str | Path, *, limit: int | None = None, samples: int | None = None,
                      seed: int = 0) -> int:
    """Evaluate the run's adapter against its base model in a detached process; its pid."""
    return runs.launch_evaluation(run_dir, limit=limit, samples=samples, seed=seed)


def evaluation_status(run_dir: str | Path) -> dict | None:
    """The last evaluation job of a run, or None when none was launched (older runs show eval.json alone)."""
    return runs.read_eval_status(run_dir)


def evaluation_progress(status: dict, now: datetime | None = None) -> tuple[float, str]:
    """(fraction, one line) of a running evaluation job from its status: chains sampled of all,
    time so far and the time left at that rate ("loading the model" before the first batch)."""
    done, total = int(status.get("done") or 0), status.get("total")
    try:
        started = datetime.fromisoformat(str(status.get("started") or status.get("created")))
    except ValueError:
        started = None
    now = now or datetime.now(timezone.utc)
    elapsed = (now - started).total_seconds() if started else None
    so_far = f" · {format_seconds(elapsed)} so far" if elapsed is not None else ""
    if not total:
        return 0.0, f"loading the model{so_far}"
    left = f" · about {format_seconds(elapsed / done * (int(total) - done))} left" if done and elapsed else ""
    return min(done / int(total), 1.0), f"{done}/{total} chains (without, then with the adapter){so_far}{left}"


def format_seconds(value: float) -> str:
    """A duration as a person reads it: 42 s, 3 min 05 s."""
    value = max(0, int(round(value)))
    return f"{value // 60} min {value % 60:02d} s" if value >= 60 else f"{value} s"


def evaluation_log(run_dir: str | Path, lines: int = 20) -> str:
    """The last lines of the evaluation job's output."""
    return runs.tail_log(run_dir, lines, name=runs.EVAL_LOG_FILE)
