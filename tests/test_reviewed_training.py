"""Human verdicts in training: rejection-SFT never trains on a chain whose latest human decision is
reject (asserted on the targets the step selects, and on a whole round's chosen chains), and a
round config can add the accepted chains of a reviewed set as SFT targets."""

from __future__ import annotations

import copy

import pytest
import torch

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import config_from_data, resolve_paths
from rcsd_core.errors import InputError
from rcsd_core.modeling.generation import Sample
from rcsd_core.studio.store import ReviewStore
from rcsd_core.training.objectives import StepModels, rejection_sft_step
from rcsd_core.training.reviewed import load_reviewed
from rcsd_core.training.round import train_round

BASE = {"model": "tiny-random", "rubric": "sample_rubrics/arithmetic.yaml",
        "tasks": "sample_rubrics/arithmetic.tasks.jsonl", "method": "rejection_sft", "steps": 1,
        "prompts_per_step": 2, "samples_per_prompt": 3, "max_new_tokens": 6, "seed": 0, "eval_every": 0,
        "eval_tasks": 1, "checkpoint_every": 0, "threads": 1, "device": "cpu"}


def export(tmp_path, decisions: list[tuple[str, str, str]]) -> str:
    """A review store export where (task_id, text) got `decision` (a later entry for a chain wins)."""
    store = ReviewStore(tmp_path / "reviews.sqlite")
    for n, (task_id, text, decision) in enumerate(decisions):
        flag = store.add_flag({"id": f"c{n}", "task_id": task_id, "text": text}, rubric_name="arith",
                              rubric_version="v1", reason="review", flagged_by="ana")
        store.add_review(flag, reviewer="ben", decision=decision)
    path = tmp_path / "reviewed.jsonl"
    store.export_jsonl(path)
    return str(path)


def test_latest_decision_of_a_chain_wins(tmp_path):
    path = export(tmp_path, [("t1", "A", "reject"), ("t1", "B ", "accept"), ("t1", "A", "accept"),
                             ("t2", "C", "accept"), ("t2", "C", "reject")])
    reviewed = load_reviewed(path)
    assert reviewed.rejected == {("t2", "C")}  # A was rejected, then accepted later
    assert reviewed.accepted == {"t1": ["A", "B"]}


def test_bad_export_rows_name_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"task_id": "t", "text": "x", "review": {"history": []}}\n')
    with pytest.raises(InputError) as err:
        load_reviewed(path)
    assert (err.value.line, err.value.field) == (1, "review.history")


def test_rejection_sft_step_never_selects_a_rejected_chain(tiny):
    model, tokenizer = tiny
    model = copy.deepcopy(model)
    models = StepModels(model, model, tokenizer.pad_token_id, torch.device("cpu"), sync=lambda last: torch.enable_grad())
    prompt = tokenizer("2+2?")["input_ids"]
    texts = ["Answer: 4", "Answer: 5", "four", "Answer: 9"]
    samples = [Sample(prompt_index=p, sample_index=i, prompt_ids=prompt, completion_ids=tokenizer(t)["input_ids"],
                      text=t, finished=True) for i, (p, t) in enumerate(zip([0, 0, 1, 1], texts))]
    records = [{"task_id": tid, "total": total} for tid, total in zip(["t0", "t0", "t1", "t1"], [1.0, 0.5, 0.0, 0.2])]
    config = resolve_paths(config_from_data(BASE))
    # unreviewed: the best of each prompt, "Answer: 4" and "Answer: 9"
    stats = rejection_sft_step(models, samples, copy.deepcopy(records), config)
    assert [t for _, t in stats["targets"]] == ["Answer: 4", "Answer: 9"]
    # "Answer: 4" rejected (matched on task id and stripped text): the runner-up instead; t1's both rejected
    model.zero_grad()
    marked = copy.deepcopy(records)
    stats = rejection_sft_step(models, samples, marked, config,
                               rejected={("t0", "Answer: 4"), ("t1", "four"), ("t1", "Answer: 9")})
    assert [t for _, t in stats["targets"]] == ["Answer: 5"]
    assert [bool(r.get("chosen")) for r in marked] == [False, True, False, False]
    assert [bool(r.get("human_rejected")) for r in marked] == [True, False, True, True]
    # an extra accepted chain is trained on too
    extra = [Sample(prompt_index=1, sample_index=-1, prompt_ids=prompt, completion_ids=tokenizer("Answer: 4")["input_ids"],
                    text="Answer: 4", finished=True)]
    stats = rejection_sft_step(models, samples, copy.deepcopy(records), config, rejected={("t0", "Answer: 4")},
                               extra=extra)
    assert stats["targets"] == [(0, "Answer: 5"), (1, "Answer: 9"), (1, "Answer: 4")]


def test_a_round_never_chooses_a_chain_humans_rejected(tmp_path):
    first = runs.create_run(resolve_paths(config_from_data(BASE)), tmp_path / "runs", run_id="a")
    assert train_round(first)["status"] == "done"
    chosen = [s for s in runs.read_samples(first) if s["kind"] == "train" and s.get("chosen")]
    assert len(chosen) == 2
    # reject every chain the first round chose (same seed: the second round samples the same chains)
    path = export(tmp_path, [(s["task_id"], s["text"], "reject") for s in chosen])
    second = runs.create_run(resolve_paths(config_from_data({**BASE, "reviewed_chains": path})), tmp_path / "runs",
                             run_id="b")
    assert train_round(second)["status"] == "done"
    train = [s for s in runs.read_samples(second) if s["kind"] == "train"]
    assert [(s["task_id"], s["text"]) for s in train] == [(s["task_id"], s["text"]) for s in runs.read_samples(first)
                                                          if s["kind"] == "train"]
    rejected = {(s["task_id"], s["text"].strip()) for s in chosen}
    picked = [s for s in train if s.get("chosen")]
    assert picked and not any((s["task_id"], s["text"].strip()) in rejected for s in picked)
    assert sum(bool(s.get("human_rejected")) for s in train) >= 2


def test_sft_use_needs_a_reviewed_set_and_rejection_sft():
    with pytest.raises(InputError, match="reviewed_use"):
        config_from_data({**BASE, "reviewed_use": "sft"})
    with pytest.raises(InputError, match="reviewed_use"):
        config_from_data({**BASE, "method": "rcsd", "reviewed_chains": "x.jsonl", "reviewed_use": "sft"})


def test_a_round_with_accepted_chains_as_sft_targets_runs(tmp_path):
    path = export(tmp_path, [(f"arith-{i:03d}", "The answer is below.\nAnswer: 7", "accept") for i in range(40)])
    config = resolve_paths(config_from_data({**BASE, "reviewed_chains": path, "reviewed_use": "sft"}))
    run_dir = runs.create_run(config, tmp_path / "runs", run_id="s")
    assert train_round(run_dir)["status"] == "done"
    assert "40 accepted" in (run_dir / "log.txt").read_text()
    chosen_tokens = sum(s["n_tokens"] for s in runs.read_samples(run_dir) if s["kind"] == "train" and s.get("chosen"))
    trained = runs.read_metrics(run_dir).set_index("step").loc[1, "train/completion_tokens"]
    assert trained > chosen_tokens  # the accepted chains of the step's two prompts were trained on too


def test_the_reviewed_set_is_frozen_into_the_run(tmp_path):
    path = export(tmp_path, [("arith-000", "x", "reject")])
    run_dir = runs.create_run(resolve_paths(config_from_data({**BASE, "reviewed_chains": path})), tmp_path / "runs",
                              run_id="f")
    assert (run_dir / "reviewed.jsonl").read_text() == open(path).read()
    export(tmp_path / "later", [("arith-000", "x", "accept")])  # a later export elsewhere
    open(path, "w").write("")  # the original emptied: the run keeps what it was created with
    config = runs.load_run_config(run_dir)
    assert config.reviewed_chains == str((run_dir / "reviewed.jsonl").resolve())
    assert load_reviewed(config.reviewed_chains).rejected == {("arith-000", "x")}
