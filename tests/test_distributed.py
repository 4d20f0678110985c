"""Data-parallel rounds: two gloo ranks on CPU under torchrun end with identical adapters.

DESIGN §3: on this machine `accelerate launch --cpu --num_processes 2` starts one process, while
`torchrun --nproc_per_node 2` with Accelerator(cpu=True) gives two gloo ranks. Each rank samples
its own half of the step's prompts, so identical weights at the end mean the gradients were
averaged. Deselect with `-m "not distributed"`.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import config_from_data, resolve_paths

BASE = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
        "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 2, "prompts_per_step": 2,
        "samples_per_prompt": 2, "max_new_tokens": 8, "seed": 0, "eval_every": 0, "eval_tasks": 2,
        "eval_samples": 1, "checkpoint_every": 0, "threads": 1, "device": "cpu"}


@pytest.mark.distributed
@pytest.mark.timeout(180)
def test_two_process_round_ends_with_identical_adapters(tmp_path):
    run_dir = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "runs", run_id="ddp")
    env = {**os.environ, "RCSD_RANK_HASHES": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "rcsd_core.training", "--run-dir", str(run_dir)]
    # A session of its own, so a timeout can end torchrun and, below, its workers.
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=170)
    except subprocess.TimeoutExpired:
        for child in _children(proc.pid):  # torchrun puts each worker in a process group of its own
            os.kill(child, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail("the two-process round timed out:\n" + output[-4000:])
    assert proc.returncode == 0, output[-4000:]

    status = runs.read_status(run_dir)
    assert status["status"] == "done" and status["processes"] == 2
    hashes = [(run_dir / "rank-hashes" / f"rank-{r}.txt").read_text() for r in (0, 1)]
    assert hashes[0] == hashes[1]
    # one metrics line per step, written once (rank 0 only), over both ranks' chains
    metrics = runs.read_metrics(run_dir)
    assert list(metrics["step"]) == [0, 1, 2]
    assert len([s for s in runs.read_samples(run_dir) if s["kind"] == "train"]) == 2 * 2 * 2
    weights = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return found
