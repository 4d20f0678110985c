"""Whole rounds on a GPU: each phase's memory logged, and the fused decode step's and the compiled student's
rounds equal to the modules'.

Skipped where torch sees no GPU (CI has none). On a GPU machine:

    pytest -q -m gpu tests/test_round_cuda.py

What a CPU cannot check: `metrics.PhasePeaks` reads torch's CUDA peak counter around the sampling,
teacher and student phases of a real round (every step logs the three, none above the round's peak);
and `sampler_step: fused`, its frozen weights re-laid in place and its step replayed as a CUDA graph,
draws the chains of the modules' round (greedy, float32 without TF32) with losses within rounding;
and `student_compile`, inductor's CUDA kernels for the student's passes with activations recomputed,
gives the eager round's chains and losses within rounding.
"""

from __future__ import annotations

import pytest
import torch

from rcsd_core.contracts import runs

from test_train import losses_and_texts, make_run

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture
def exact_cuda():
    """float32 products without TF32 for the block, so two rounds can be compared token for token."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_a_gpu_round_logs_each_phases_peak_memory(tmp_path, exact_cuda):
    run_dir = make_run(tmp_path, device="cuda", dtype="float32", sampler="static", steps=2, eval_every=0)
    losses_and_texts(run_dir)
    metrics = runs.read_metrics(run_dir).dropna(subset=["train/loss"])
    phases = ["memory/sampling_peak_gib", "memory/teacher_peak_gib", "memory/student_peak_gib"]
    assert all(metrics[p].notna().all() and (metrics[p] > 0).all() for p in phases)
    for p in phases:
        assert (metrics[p] <= metrics["memory/peak_gib"] + 1e-3).all()


def test_the_fused_steps_gpu_round_draws_the_modules_chains(tmp_path, exact_cuda):
    results = {}
    for step in ("modules", "fused"):
        run_dir = make_run(tmp_path, run_id=f"step-{step}", device="cuda", dtype="float32", sampler="static",
                           sampler_step=step, temperature=0, steps=2, eval_every=0)
        results[step] = losses_and_texts(run_dir)
    assert results["fused"][1] == results["modules"][1] and len(results["fused"][1]) > 0
    assert results["fused"][0] == pytest.approx(results["modules"][0], rel=1e-4, abs=1e-6)


def test_the_compiled_students_gpu_round_gives_the_eager_rounds_losses(tmp_path, exact_cuda):
    results = {}
    for on in (False, True):
        run_dir = make_run(tmp_path, run_id=f"compile-{on}", device="cuda", dtype="float32", sampler="static",
                           student_compile=on, gradient_checkpointing=True, temperature=0, steps=2, eval_every=0)
        results[on] = losses_and_texts(run_dir)
    assert results[True][1] == results[False][1] and len(results[True][1]) > 0
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-4, abs=1e-6)
