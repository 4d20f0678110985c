"""One teacher layout for every reader: a run's guidance map and signal show the teacher that run trained with.

The layout (worked examples as turns or inside the system text, how many, the reference or not,
rcsd or opsd) is frozen into a run's config; `load_run_config(run).teacher_layout()` gives it back
and the round, its evaluation, `rcsd guidance --run-dir` and `rcsd signal --run-dir` all build the
teacher's ids from it through `modeling.contexts.teacher_prompt_ids`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

import pytest
import torch

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import TeacherLayout, config_from_data, resolve_paths
from rcsd_core.contracts.messages import encode_messages
from rcsd_core.design.guidance import guidance_map
from rcsd_core.design.signals import measure_signal
from rcsd_core.modeling.contexts import student_prompt_ids, teacher_messages, teacher_prompt_ids
from rcsd_core.modeling.generation import sample_chains
from rcsd_core.modeling.losses import divergence_per_token

CHAIN = "4 + 3 = 7\nAnswer: 7"


@pytest.fixture()
def run_layout(tmp_path) -> TeacherLayout:
    """A run whose teacher saw one worked example inside the system text and the reference."""
    config = resolve_paths(config_from_data({
        "model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
        "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rcsd", "steps": 1, "prompts_per_step": 1,
        "samples_per_prompt": 1, "max_new_tokens": 4, "seed": 0, "teacher_examples": 1,
        "teacher_example_turns": False, "teacher_reference": True}))
    run_dir = runs.create_run(config, tmp_path / "runs", run_id="system-example")
    return runs.load_run_config(run_dir).teacher_layout()


def test_the_run_layout_comes_back_from_the_frozen_config(run_layout):
    assert run_layout == TeacherLayout(method="rcsd", examples=1, example_turns=False, include_reference=True)
    assert run_layout != TeacherLayout()


def test_teacher_ids_follow_the_layout(tokenizer, arith_rubric, arith_tasks, run_layout):
    task = arith_tasks[0]
    ids = teacher_prompt_ids(tokenizer, task, arith_rubric, run_layout)
    want = encode_messages(tokenizer, teacher_messages(task.prompt, arith_rubric, reference=task.reference,
                                                       examples=1, example_turns=False, include_reference=True))
    assert ids == want
    text = tokenizer.decode(ids)
    assert "Worked example." in text and task.reference in text       # the example sits in the system text
    assert ids != teacher_prompt_ids(tokenizer, task, arith_rubric)    # not the default layout


def test_a_guidance_map_for_a_run_uses_its_layout(tiny, arith_rubric, arith_tasks, run_layout):
    model, tokenizer = tiny
    task = arith_tasks[0]
    gmap = guidance_map(model, tokenizer, arith_rubric, task, CHAIN, layout=run_layout)
    default = guidance_map(model, tokenizer, arith_rubric, task, CHAIN)
    ids = tokenizer.encode(CHAIN, add_special_tokens=False)
    s_prompt = student_prompt_ids(tokenizer, task)
    t_prompt = teacher_prompt_ids(tokenizer, task, arith_rubric, run_layout)
    with torch.no_grad():  # unpadded forwards of each context, by hand
        s = model(input_ids=torch.tensor([s_prompt + ids])).logits[:, len(s_prompt) - 1:-1]
        t = model(input_ids=torch.tensor([t_prompt + ids])).logits[:, len(t_prompt) - 1:-1]
    want = divergence_per_token("forward_kl", s, t)[0]
    got = torch.tensor([row["divergence"] for row in gmap.tokens])
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
    assert gmap.meta["layout"] == asdict(run_layout)
    other = torch.tensor([row["divergence"] for row in default.tokens])
    assert not torch.allclose(got, other, rtol=1e-4, atol=1e-6)


def test_signal_for_a_run_uses_its_layout(tiny, arith_rubric, arith_tasks, run_layout):
    from rcsd_core.design.preview import preview_chains

    model, tokenizer = tiny
    tasks = arith_tasks[:2]
    common = dict(model=model, tokenizer=tokenizer, samples=1, max_new_tokens=4, temperature=0)
    report = measure_signal(arith_rubric, tasks, layout=run_layout, **common)
    default = measure_signal(arith_rubric, tasks, **common)
    assert report["layout"] == asdict(run_layout) and report["include_reference"] is True
    assert default["layout"] == asdict(TeacherLayout())
    # student chains are the same; their divergence is measured against the run's teacher
    assert report["divergence"]["mean"] != pytest.approx(default["divergence"]["mean"], rel=1e-6)
    # the teacher-context chains are what the run's teacher prompt samples (greedy)
    records, _ = preview_chains(arith_rubric, tasks, context="teacher", layout=run_layout, **common)
    prompts = [teacher_prompt_ids(tokenizer, t, arith_rubric, run_layout) for t in tasks]
    direct, _ = sample_chains(model, tokenizer, prompts, n=1, max_new_tokens=4, temperature=0)
    assert [r["text"] for r in records] == [s.text for s in direct]


def test_cli_run_dir_gives_the_run_layout(run_layout, tmp_path):
    from rcsd_core.cli.design import run_layout as layout_of

    run_dir = tmp_path / "runs" / "system-example"
    assert layout_of(argparse.Namespace(run_dir=str(run_dir))) == run_layout
    assert layout_of(argparse.Namespace(run_dir=None)) is None
