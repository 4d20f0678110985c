"""modeling.allocator: freed large blocks are reused instead of faulted in again from the system."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Three divergence calls over 256 positions of a 49,152-token vocabulary (two 25 MB float32 chunks
# each); prints the minor page faults of the last two calls, after the first has warmed the heap.
PROBE = """
import json, resource, sys, torch
sys.path.insert(0, {root!r})
from rcsd_core.modeling.allocator import keep_freed_memory
from rcsd_core.modeling.losses import lm_head_chunked_divergence
kept = keep_freed_memory() if {keep} else None
torch.set_num_threads(1)
torch.manual_seed(0)
weight = (torch.randn(49152, 64) * 0.05).bfloat16()
student = torch.randn(1, 256, 64).bfloat16().requires_grad_()
teacher = torch.randn(1, 256, 64).bfloat16()
mask = torch.ones(1, 256, dtype=torch.bool)
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    lm_head_chunked_divergence("forward_kl", student, teacher, weight, mask, 128).backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({{"kept": kept, "faults": sum(faults[1:])}}))
"""


def probe(keep: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), keep=keep)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_reused_without_page_faults():
    default, kept = probe(False), probe(True)
    assert kept["kept"] is True
    # measured: ~80 thousand faults for the two calls by default, a few thousand at most with kept memory
    assert default["faults"] > 20_000
    assert kept["faults"] < default["faults"] / 5


def test_keep_freed_memory_is_a_no_op_off_linux(monkeypatch):
    from rcsd_core.modeling import allocator

    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_freed_memory() is False
