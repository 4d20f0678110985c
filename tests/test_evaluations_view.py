"""The Results page says which evaluation it shows and why two evaluations of a run may disagree."""

from __future__ import annotations

import json

import pandas as pd
from test_pages import _finished_run, home, open_page, texts  # noqa: F401  (home is a fixture)

from rcsd_core.files import atomic_write_text
from rcsd_core.studio import workspace as ws
from rcsd_core.studio.evaluations import evaluation_notes, in_round_change

CONFIG = {"eval_tasks": 40, "eval_samples": 2, "eval_seed": 0}
METRICS = pd.DataFrame([{"step": 0, "eval/total": 0.30}, {"step": 1, "train/loss": 1.0},
                        {"step": 3, "eval/total": 0.28}])


def _evaluation(diff, low, high, prompts=4, seed=0):
    return {"eval_prompts": prompts, "samples": 1, "seed": seed, "adapter_step": 3,
            "total": {"before": 0.2, "after": 0.2 + diff, "diff": diff, "ci_low": low, "ci_high": high}}


def test_in_round_change_reads_first_and_last_evaluated_steps():
    assert in_round_change(METRICS) == {"first_step": 0, "first": 0.30, "last_step": 3, "last": 0.28,
                                        "steps": [0, 3]}
    assert in_round_change(pd.DataFrame([{"step": 1, "train/loss": 1.0}])) is None


def test_a_small_opposite_evaluation_is_explained_not_trumpeted():
    notes = evaluation_notes(_evaluation(0.114, -0.05, 0.27), METRICS, CONFIG)
    assert notes[0] == "Shown: base vs adapter of step 3 on 4 eval prompts × 1 chains, seed 0."
    assert "steps 0, 3: eval total 0.300 → 0.280" in notes[1]
    assert "includes zero" in notes[2]
    assert "in the other direction" in notes[3] and "fewer prompts (4 against 40)" in notes[3]


def test_agreeing_evaluations_on_as_many_prompts_add_no_warning():
    notes = evaluation_notes(_evaluation(-0.03, -0.05, -0.01, prompts=40), METRICS, CONFIG)
    assert len(notes) == 2                      # which evaluation, and the round's own; nothing to explain


def test_without_a_job_the_round_s_own_evaluation_is_named():
    notes = evaluation_notes(None, METRICS, CONFIG)
    assert notes[-1].startswith("No before/after evaluation of the adapter yet")


def test_results_page_says_which_evaluation_it_shows(home):
    run_id = _finished_run(home)
    run_dir = ws.run_dir(home, run_id)
    evaluation = json.loads((run_dir / "eval.json").read_text())
    (run_dir / "eval.json").unlink()
    at = open_page("pages/results.py")
    page = texts(at).replace("\\", "")   # captions escape Markdown characters
    assert "no evaluation yet" not in page
    assert "No before/after evaluation of the adapter yet" in page and "at steps 1, 2" in page
    atomic_write_text(run_dir / "eval.json", json.dumps({**evaluation, "eval_prompts": 4, "samples": 1, "seed": 0}))
    at = open_page("pages/results.py")
    page = texts(at).replace("\\", "")   # captions escape Markdown characters
    assert "Shown: base vs adapter on 4 eval prompts × 1 chains, seed 0." in page
    assert "includes zero" in page
    after = next(m for m in at.metric if m.label == "eval total · after")
    assert "color: GRAY" in str(after.proto)            # not the green of an improvement
