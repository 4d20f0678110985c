"""Signal per criterion: report shape, gap = teacher − student inside its CI, the divergence on
student chains equal to a direct computation, and the CLI (file written; bad input exits 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rcsd_core.contracts.messages import encode_messages
from rcsd_core.modeling.contexts import student_messages, teacher_messages
from rcsd_core.modeling.losses import divergence_per_token
from rcsd_core.modeling.models import load_model
from rcsd_core.contracts.rubric import load_rubric
from rcsd_core.design.signals import compare, measure_signal, signal_table
from rcsd_core.contracts.tasks import Task

ROOT = Path(__file__).resolve().parent.parent
RUBRIC = ROOT / "sample_rubrics" / "arithmetic.yaml"
TASKS = ROOT / "sample_rubrics" / "arithmetic.tasks.jsonl"


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random")


@pytest.fixture(scope="module")
def report(tiny):
    model, tokenizer = tiny
    rubric = load_rubric(RUBRIC)
    tasks = [Task(id="t1", prompt="Ann has 4 pens and gets 3 more. How many?", reference="7"),
             Task(id="t2", prompt="What is 12 x 3?", reference="36")]
    return measure_signal(rubric, tasks, model=model, tokenizer=tokenizer, samples=3, max_new_tokens=8, seed=1)


def test_report_shape_and_gaps(report):
    rubric = load_rubric(RUBRIC)
    assert set(report["criteria"]) == {c.id for c in rubric.criteria}
    assert report["rubric"] == rubric.name and report["rubric_version"] == rubric.version
    assert (report["samples"], report["max_new_tokens"], report["seed"]) == (3, 8, 1)
    for cid, row in list(report["criteria"].items()) + [("total", report["total"])]:
        assert {"student", "teacher", "gap", "ci", "signal", "n_student", "n_teacher"} <= set(row), cid
        assert row["n_student"] <= 6 and row["n_teacher"] <= 6
        if row["gap"] is None:
            continue
        assert row["gap"] == pytest.approx(row["teacher"] - row["student"])
        low, high = row["ci"]
        assert low - 1e-9 <= row["gap"] <= high + 1e-9
        assert row["signal"] == (low > 0 or high < 0)
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN anywhere
    assert list(signal_table(report)["criterion"]) == [c.id for c in rubric.criteria] + ["total"]


def test_student_chain_divergence_matches_direct_computation(tiny, report):
    """Each chain's divergence is the mean over its tokens of forward KL between the teacher's logits
    (teacher prompt + chain) and the student's (student prompt + chain), recomputed here by hand."""
    model, tokenizer = tiny
    rubric = load_rubric(RUBRIC)
    per_chain = report["divergence"]["per_chain"]
    assert len(per_chain) == 6 and all(d["id"].split(":")[1] == "student" for d in per_chain)
    means = [d["mean"] for d in per_chain if d["mean"] is not None]
    assert report["divergence"]["mean"] == pytest.approx(sum(means) / len(means))

    # recompute one chain from scratch, with unpadded full forwards of each context
    chain = next(d for d in per_chain if d["n_tokens"] > 1)
    prompts = {"t1": "Ann has 4 pens and gets 3 more. How many?", "t2": "What is 12 x 3?"}
    ids = tokenizer.encode(chain["text"], add_special_tokens=False)
    if chain["finished"]:
        ids.append(tokenizer.eos_token_id)
    s_prompt = encode_messages(tokenizer, student_messages(prompts[chain["task_id"]]))
    t_prompt = encode_messages(tokenizer, teacher_messages(prompts[chain["task_id"]], rubric,
                                                           reference="7", include_reference=False))
    with torch.no_grad():
        s = model(input_ids=torch.tensor([s_prompt + ids])).logits[:, len(s_prompt) - 1:-1]
        t = model(input_ids=torch.tensor([t_prompt + ids])).logits[:, len(t_prompt) - 1:-1]
    direct = divergence_per_token("forward_kl", s, t).mean().item()
    assert chain["mean"] == pytest.approx(direct, rel=1e-4, abs=1e-7)
    assert chain["n_tokens"] == len(ids)


def test_compare_flags_a_clear_gap_and_its_direction():
    clear = compare([0.0] * 20, [1.0] * 20, weight=3)
    assert clear["signal"] and clear["helps"] and clear["gap"] == 1.0 and clear["ci"] == [1.0, 1.0]
    pitfall = compare([0.0] * 20, [1.0] * 20, weight=-2)  # the teacher shows the flaw more: bad
    assert pitfall["signal"] and pitfall["helps"] is False
    none = compare([0.0, 1.0] * 10, [1.0, 0.0] * 10)
    assert none["gap"] == 0.0 and not none["signal"] and none["helps"] is None
    empty = compare([], [1.0])
    assert empty["student"] is None and empty["gap"] is None and not empty["signal"]


def _rcsd(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rcsd_core.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


def test_cli_writes_report(tmp_path):
    out = tmp_path / "signal.json"
    done = _rcsd("signal", "--rubric", str(RUBRIC), "--tasks", str(TASKS), "--model", "tiny-random", "--limit", "1",
                 "--samples", "2", "--max-new-tokens", "3", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["samples"] == 2 and report["tasks"] == 1 and report["model"] == "tiny-random"
    assert report["criteria"]["final-answer-line"]["n_student"] == 2
    assert "final-answer-line" in done.stdout and "gap" in done.stdout


def test_cli_bad_rubric_exits_2_without_output(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncriteria:\n  - id: a\n    description: d\n    weight: 0\n")
    out = tmp_path / "signal.json"
    done = _rcsd("signal", "--rubric", str(bad), "--tasks", str(TASKS), "--model", "tiny-random", "--out", str(out),
                 cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "bad.yaml" in done.stderr and "weight" in done.stderr
    assert not out.exists()


def test_signal_reuses_chains_already_sampled_in_both_contexts(tiny):
    from rcsd_core.design.preview import preview_chains

    model, tokenizer = tiny
    from rcsd_core.contracts.tasks import load_tasks

    rubric = load_rubric(RUBRIC)
    tasks = load_tasks(TASKS, split="train")[:4]
    records, _ = preview_chains(rubric, tasks, model=model, tokenizer=tokenizer, samples=2, max_new_tokens=6,
                                context="both", seed=3)
    calls = []
    reused = measure_signal(rubric, tasks, model=model, tokenizer=tokenizer, samples=2, max_new_tokens=6, seed=3,
                            records=records, progress=lambda d, t: calls.append((d, t)))
    fresh = measure_signal(rubric, tasks, model=model, tokenizer=tokenizer, samples=2, max_new_tokens=6, seed=3)
    assert reused["reused_chains"] and not fresh["reused_chains"]
    assert calls[-1] == (8, 8)                         # only the 8 student chains' divergence was measured
    # the same seed samples the same chains, so reusing them gives the fresh report's figures
    assert reused["criteria"] == fresh["criteria"] and reused["total"] == fresh["total"]
    assert reused["divergence"]["mean"] == pytest.approx(fresh["divergence"]["mean"])
