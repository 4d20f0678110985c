"""Fault injection: rounds, review writers and rubric saves killed (SIGKILL) at seeded random points.

After each kill the workspace must reload, a round must resume, and nothing committed may be lost:
every step a round finished appears exactly once after the resume, every review and flag whose write
returned is in the store, and every rubric version whose save returned loads with its content.

Rounds are killed at the K-th atomic rename of the process (`os.replace`: status writes, checkpoint
swaps — between the two renames of a swap too), so the kill lands inside a write, not between them.
"""

from __future__ import annotations

import json
import os
import random
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
from rcsd_core.contracts.rubric import rubric_from_data
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.store import ReviewStore
from rcsd_core.training.round import train_round

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
BASE = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
        "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 4, "prompts_per_step": 2,
        "samples_per_prompt": 2, "max_new_tokens": 6, "seed": 0, "eval_every": 2, "eval_tasks": 2,
        "eval_samples": 1, "checkpoint_every": 1, "threads": 1, "device": "cpu"}

# ---------------------------------------------------------------------------- rounds

KILL_AT_RENAME = """
import os, signal, sys
where, _, n = sys.argv[2].rpartition(":")      # "K": the K-th rename; "swap:N": the N-th staging -> adapter/
K = int(n)
real, calls = os.replace, [0]
def replace(src, dst):
    if not where or str(dst).endswith("/adapter"):
        calls[0] += 1
        if calls[0] == K:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
from rcsd_core.training.round import train_round
train_round(sys.argv[1], resume=len(sys.argv) > 3)
"""


def renames_in_a_round(tmp_path) -> int:
    """How many atomic renames a whole round of BASE makes (counted in a straight run)."""
    counter = KILL_AT_RENAME.replace("os.kill(os.getpid(), signal.SIGKILL)", "pass").replace(
        "train_round(sys.argv[1], resume=len(sys.argv) > 3)",
        "train_round(sys.argv[1]); open(sys.argv[1] + '/../renames', 'w').write(str(calls[0]))")
    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "count", run_id="count")
    subprocess.run([sys.executable, "-c", counter, str(run_dir), "0"], env=ENV, check=True, timeout=300,
                   capture_output=True)
    return int((tmp_path / "count" / "renames").read_text())


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted round of BASE: its metrics and adapter are what every resumed round must reach."""
    tmp = tmp_path_factory.mktemp("straight")
    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp / "runs", run_id="straight")
    train_round(run_dir)
    return run_dir, renames_in_a_round(tmp)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [1, 2, 3, "swap:2", "swap:4"])
def test_a_round_killed_at_a_random_rename_resumes_without_losing_or_repeating_a_step(tmp_path, straight, seed):
    """Seeded random renames, and the checkpoint swap itself (adapter/ already moved aside, the new one
    not yet in place) of the 2nd and 4th checkpoint."""
    reference, renames = straight
    kill_at = seed if isinstance(seed, str) else str(random.Random(seed).randint(3, renames - 1))
    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "runs", run_id="killed")
    killed = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, str(run_dir), kill_at], env=ENV,
                            capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    # the workspace reloads: status says the process is gone, metrics and samples read back
    assert runs.read_status(run_dir)["status"] in ("failed", "queued")
    done_before = [int(s) for s in runs.read_metrics(run_dir)["step"]]
    assert done_before == sorted(set(done_before))
    runs.read_samples(run_dir)

    assert train_round(run_dir, resume=True)["status"] == "done"
    steps = [int(s) for s in runs.read_metrics(run_dir)["step"]]
    assert steps == [0, 1, 2, 3, 4]                                  # none lost, none twice
    ours = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    theirs = load_file(str(reference / "adapter" / "adapter_model.safetensors"))
    assert all(torch.allclose(ours[k], theirs[k]) for k in theirs)   # the straight run's weights
    assert not any(p.name.startswith(".adapter") for p in run_dir.iterdir())


# ---------------------------------------------------------------------------- the review store

REVIEW_WRITER = """
import sys
from rcsd_core.studio.store import ReviewStore
store = ReviewStore(sys.argv[1])
chain = {"id": "set/t1:student:0", "task_id": "t1", "text": "2 + 2 = 4", "scores": {"a": 1.0}}
for i in range(10_000):
    flag = store.add_flag(chain, rubric_name="r", rubric_version="v1", reason=f"r{i}", flagged_by="w")
    review = store.add_review(flag, reviewer="w", decision="accept", note=f"n{i}", verdicts={"a": 1.0})
    print(flag, review, flush=True)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_a_review_writer_killed_mid_write_loses_no_committed_review(tmp_path, seed):
    db = tmp_path / "reviews.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", REVIEW_WRITER, str(db)], env=ENV, stdout=subprocess.PIPE,
                              text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not db.exists():
        time.sleep(0.05)
    time.sleep(0.5 + random.Random(seed).random())
    writer.send_signal(signal.SIGKILL)
    out, _ = writer.communicate(timeout=30)
    committed = [tuple(map(int, line.split())) for line in out.splitlines() if len(line.split()) == 2]
    assert committed, "the writer committed nothing before the kill"

    store = ReviewStore(db)                                   # opens and reads after the kill
    queue = store.queue()
    for flag_id, review_id in committed:
        assert flag_id in set(queue["id"])
        assert any(h["decision"] == "accept" for h in store.history(flag_id))
    store.add_flag({"id": "after", "task_id": "t", "text": "x", "scores": {}}, rubric_name="r",
                   rubric_version="v1", reason="still writable", flagged_by="t")


# ---------------------------------------------------------------------------- rubric versions

RUBRIC_SAVER = """
import sys
from rcsd_core.contracts.rubric import rubric_from_data
from rcsd_core.studio import workspace as ws
root = ws.ensure_workspace(sys.argv[1])
for i in range(10_000):
    rubric = rubric_from_data({"name": "kept", "criteria": [
        {"id": "a", "description": f"criterion text {i}", "weight": 1}]})
    print(ws.save_rubric_version(root, rubric, note=f"save {i}"), flush=True)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_a_rubric_save_killed_mid_write_loses_no_saved_version(tmp_path, seed):
    root = tmp_path / "ws"
    saver = subprocess.Popen([sys.executable, "-c", RUBRIC_SAVER, str(root)], env=ENV, stdout=subprocess.PIPE,
                             text=True)
    time.sleep(2.0 + random.Random(seed).random())
    saver.send_signal(signal.SIGKILL)
    out, _ = saver.communicate(timeout=30)
    saved = out.split()
    assert saved, "the saver saved nothing before the kill"

    root = ws.ensure_workspace(root)                           # the workspace reloads
    assert "kept" in ws.list_rubrics(root)
    listed = {h["version"] for h in ws.rubric_versions(root, "kept")}
    for i, version in enumerate(saved):
        rubric = ws.load_rubric_version(root, "kept", version)
        assert rubric.version == version and rubric.criteria[0].description == f"criterion text {i}"
        assert version in listed
    current = ws.load_rubric_version(root, "kept")             # current points at a version that loads
    assert current.version in listed
    again = rubric_from_data({"name": "kept", "criteria": [{"id": "a", "description": "after", "weight": 1}]})
    assert ws.save_rubric_version(root, again) == again.version
    json.dumps(ws.rubric_versions(root, "kept"))
