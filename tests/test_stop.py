"""Stopping a round: one SIGTERM or a STOP file ends a one-process round within seconds, inside a step.

The unfinished step is dropped (no metrics line, no chains, no weight change), the last completed
step is checkpointed, and status.json says `stopped` with the step of that checkpoint — or that there
is none when the stop came before step 1. Resuming then gives the straight run's result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import config_from_data, resolve_paths
from rcsd_core.training import rollouts as round_module
from rcsd_core.training.round import train_round

BASE = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
        "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 3, "prompts_per_step": 2,
        "samples_per_prompt": 2, "max_new_tokens": 8, "seed": 0, "eval_every": 0, "eval_tasks": 2,
        "eval_samples": 1, "checkpoint_every": 0, "threads": 1, "device": "cpu", "sampling_batch_size": 2}


def make_run(tmp_path, run_id: str, **overrides) -> Path:
    config = resolve_paths(config_from_data({**BASE, **overrides}))
    return runs.create_run(config, tmp_path / "runs", run_id=run_id)


def stop_during_sampling_call(monkeypatch, run_dir: Path, call: int) -> None:
    """Write the STOP file when the round starts its `call`-th sampling (1 = the step-0 evaluation)."""
    real = round_module.Rollouts.sample
    calls = {"n": 0}

    def sampling(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            (run_dir / runs.STOP_FILE).write_text("stop\n")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(round_module.Rollouts, "sample", sampling)


def steps_logged(run_dir: Path) -> list[int]:
    return [int(s) for s in runs.read_metrics(run_dir)["step"]]


def test_a_stop_inside_step_two_drops_it_and_checkpoints_step_one(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, "stopped")
    stop_during_sampling_call(monkeypatch, run_dir, call=3)  # evaluation, step 1, then step 2's sampling
    result = train_round(run_dir)
    status = runs.read_status(run_dir)
    assert result["status"] == "stopped" and result["step"] == 1
    assert status["status"] == "stopped" and status["checkpoint"] == 1 and status["step"] == 1
    assert steps_logged(run_dir) == [0, 1]                                  # step 2 left nothing behind
    assert {r["step"] for r in runs.read_samples(run_dir)} == {0, 1}
    assert not (run_dir / runs.STOP_FILE).exists()                          # the request is answered
    assert "during step 2: that step is dropped" in (run_dir / runs.LOG_FILE).read_text()

    monkeypatch.undo()
    assert train_round(run_dir, resume=True)["status"] == "done"
    straight = make_run(tmp_path, "straight")
    train_round(straight)
    assert steps_logged(run_dir) == steps_logged(straight) == [0, 1, 2, 3]
    a = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(straight / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stop_before_step_one_says_there_is_no_checkpoint(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, "early")
    stop_during_sampling_call(monkeypatch, run_dir, call=1)  # during the evaluation before step 1
    assert train_round(run_dir)["status"] == "stopped"
    status = runs.read_status(run_dir)
    assert status["status"] == "stopped" and status["checkpoint"] is None and status["step"] == 0
    assert not (run_dir / runs.ADAPTER_DIR).exists()
    assert "no checkpoint: resume starts from step 1" in (run_dir / runs.LOG_FILE).read_text()


@pytest.mark.timeout(240)
def test_one_sigterm_stops_a_running_round_within_seconds(tmp_path):
    run_dir = make_run(tmp_path, "signalled", steps=500, samples_per_prompt=4, max_new_tokens=24)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rcsd_core.training", "--run-dir", str(run_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 150
        while time.time() < deadline and runs.read_status(run_dir).get("step", 0) < 1:
            time.sleep(0.2)
        assert runs.read_status(run_dir)["step"] >= 1, "the round never finished step 1"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        waited = time.monotonic() - sent
    finally:
        proc.kill()
    status = runs.read_status(run_dir)
    assert code == 0 and status["status"] == "stopped"
    assert status["checkpoint"] == status["step"] >= 1
    assert steps_logged(run_dir)[-1] == status["step"]
    assert waited < 20, f"the round took {waited:.1f} s to stop"
