"""The held-out watch: a scripted metrics history whose trained total rises while the held-out
measure falls raises an alert naming both; flat or within-interval histories raise none. The
`held_out` rubric field (never shown to the teacher, left out of the total, version unchanged for
rubrics without it), the `equations_true` check, a round logging and alerting, the Train page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rcsd_core.contracts import runs
from rcsd_core.contracts.config import preset_config
from rcsd_core.contracts.rubric import load_rubric, parse_rubric, rubric_from_data
from rcsd_core.errors import InputError
from rcsd_core.modeling.contexts import render_rubric
from rcsd_core.scoring.checks import check_equations_true
from rcsd_core.scoring.scores import score_text, total_score
from rcsd_core.scoring.watch import held_out_metrics, watch_alert

ROOT = Path(__file__).resolve().parent.parent
ARITH = ROOT / "sample_rubrics" / "arithmetic.yaml"
HELD = "eval/held_out/equations-true"


def line(step, total, fmt, truth, low, high):
    return {"step": step, "eval/total": total, "eval/criterion/final-answer-line": fmt,
            "eval/criterion/equations-true": truth, HELD: truth, f"{HELD}/low": low, f"{HELD}/high": high}


def test_trained_rising_while_held_out_falls_alerts_naming_both():
    history = [line(0, 0.17, 0.0, 0.38, 0.30, 0.46), {"step": 1, "train/loss": 0.5},
               line(30, 0.27, 0.18, 0.24, 0.17, 0.31)]
    alert = watch_alert(history, ["equations-true"])
    assert alert is not None
    assert "final-answer-line 0.000 → 0.180" in alert and "0.170 → 0.270" in alert
    assert "held-out equations-true fell 0.380 → 0.240" in alert and "[0.170, 0.310]" in alert
    assert alert.startswith("step 30:")
    assert watch_alert(history) == alert  # the held-out ids read from the metric keys


@pytest.mark.parametrize("history", [
    [line(0, 0.17, 0.0, 0.38, 0.30, 0.46), line(30, 0.17, 0.0, 0.38, 0.30, 0.46)],    # flat
    [line(0, 0.17, 0.0, 0.38, 0.30, 0.46), line(30, 0.27, 0.18, 0.33, 0.25, 0.41)],   # falls, within its interval
    [line(0, 0.27, 0.18, 0.38, 0.30, 0.46), line(30, 0.17, 0.0, 0.24, 0.17, 0.31)],   # trained fell too
    [line(0, 0.17, 0.0, 0.38, 0.30, 0.46)],                                           # one evaluation
])
def test_no_alert_without_the_divergence_of_trained_and_held_out(history):
    assert watch_alert(history, ["equations-true"]) is None


def test_held_out_metrics_mean_interval_and_count():
    rubric = load_rubric(ARITH)
    records = [{"scores": {"equations-true": v}} for v in (1.0, 0.0, 1.0, None)]
    m = held_out_metrics(rubric, records)
    assert m[HELD] == pytest.approx(2 / 3) and m[f"{HELD}/n"] == 3
    assert 0.0 <= m[f"{HELD}/low"] <= 2 / 3 <= m[f"{HELD}/high"] <= 1.0


def test_equations_true_check():
    assert check_equations_true("3 x 12 = 36\n36 - 10 = 26\nAnswer: 26") == 1.0
    assert check_equations_true("3 x 12 = 35\n36 - 10 = 26") == 0.0
    assert check_equations_true("12 / 4 = 3 and 7 / 2 = 3") == 0.0
    assert check_equations_true("no working") is None


def test_held_out_criterion_is_hidden_from_the_teacher_and_the_total():
    rubric = load_rubric(ARITH)
    assert [c.id for c in rubric.held_out_criteria] == ["equations-true"]
    shown = render_rubric(rubric, examples=2)
    assert "Equations are true" not in shown and "Final answer line" in shown
    scores, _ = score_text(rubric, "3 x 12 = 35\nAnswer: 35", reference="36")
    assert scores["equations-true"] == 0.0
    # total over trained criteria only: (3·1 + 5·0 + 2·1 + 1·1 − 2·0) / (3 + 5 + 2 + 1)
    assert total_score(rubric, scores) == pytest.approx(6 / 11)


def test_held_out_contract_validation_and_stable_versions():
    base = {"name": "r", "criteria": [{"id": "a", "description": "d", "weight": 1}]}
    explicit = {"name": "r", "criteria": [{"id": "a", "description": "d", "weight": 1, "held_out": False}]}
    assert rubric_from_data(base).version == rubric_from_data(explicit).version
    with pytest.raises(InputError, match="held_out"):
        parse_rubric("name: r\ncriteria:\n  - {id: a, description: d, weight: 1, held_out: maybe}\n", source="r.yaml")
    with pytest.raises(InputError, match="held out"):
        rubric_from_data({"name": "r", "criteria": [{"id": "a", "description": "d", "weight": 1, "held_out": True},
                                                    {"id": "p", "description": "d", "weight": -1}]})


def test_round_logs_the_held_out_metric_and_raises_the_alert(tmp_path, monkeypatch):
    """A 1-step tiny-random round on the arithmetic rubric: every evaluation logs the held-out metric;
    an alert (scripted here) lands in the metrics line, status.json and log.txt."""
    from rcsd_core.training import round as round_module

    seen = []

    def scripted(history, held):
        seen.append((len(history), list(held)))
        return "trained rose while held-out equations-true fell" if len(seen) == 2 else None

    monkeypatch.setattr(round_module, "watch_alert", scripted)
    config = preset_config("cpu-demo", model="tiny-random", steps=1, prompts_per_step=1, samples_per_prompt=2,
                           max_new_tokens=6, eval_every=1, eval_tasks=2, eval_samples=1, threads=1,
                           rubric=str(ARITH), tasks=str(ROOT / "sample_rubrics" / "arithmetic.tasks.jsonl"))
    run_dir = runs.create_run(config, tmp_path / "runs", run_id="watch")
    assert round_module.train_round(run_dir)["status"] == "done"
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in lines if "eval/total" in m]
    assert len(evals) == 2 and all(f"{HELD}/n" in m for m in evals)
    assert seen == [(1, ["equations-true"]), (2, ["equations-true"])]
    assert evals[-1]["watch/alert"] == "trained rose while held-out equations-true fell"
    assert runs.read_status(run_dir)["alert"] == "trained rose while held-out equations-true fell"
    assert "held-out watch: trained rose" in (run_dir / "log.txt").read_text()


def test_train_page_shows_the_alert_and_the_watch_chart(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from rcsd_core.files import append_jsonl
    from rcsd_core.studio import workspace as ws

    home = ws.ensure_workspace(tmp_path / "ws")
    monkeypatch.setenv("RCSD_HOME", str(home))
    config = preset_config("cpu-demo", model="tiny-random", steps=30, rubric=str(ws.rubric_path(home, "grade-school-math")),
                           tasks=str(ws.task_set_path(home, "arithmetic")))
    run_dir = runs.create_run(config, ws.runs_root(home), run_id="watched")
    append_jsonl(run_dir / "metrics.jsonl", line(0, 0.17, 0.0, 0.38, 0.30, 0.46))
    append_jsonl(run_dir / "metrics.jsonl", {**line(30, 0.27, 0.18, 0.24, 0.17, 0.31), "train/loss": 0.1})
    runs.write_status(run_dir, "done", step=30)

    def page():
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.switch_page("pages/train.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    at = page()
    warnings = [str(w.value) for w in at.warning]
    assert any("Held-out watch" in w and "equations-true fell" in w and "final-answer-line" in w for w in warnings)
    charts = at.get("plotly_chart")
    assert any("Held-out watch" in json.dumps(json.loads(c.proto.spec)["layout"]["title"]) for c in charts)

    (run_dir / "metrics.jsonl").unlink()
    append_jsonl(run_dir / "metrics.jsonl", line(0, 0.17, 0.0, 0.38, 0.30, 0.46))
    append_jsonl(run_dir / "metrics.jsonl", line(30, 0.17, 0.0, 0.38, 0.30, 0.46))
    at = page()
    assert not [w for w in at.warning if "Held-out watch" in str(w.value)]
    assert any("no alert" in str(c.value) for c in at.caption)


def test_editor_rows_keep_held_out_and_refuse_a_rubric_with_nothing_trained():
    import pandas as pd

    from rcsd_core.studio import workspace as ws

    rubric = load_rubric(ARITH)
    rows = pd.DataFrame(ws.criteria_rows(rubric), columns=ws.EDITOR_COLUMNS).to_dict("records")
    data = ws.rubric_data_from_rows(rubric.name, rubric.description, rows, [e.model_dump() for e in rubric.examples])
    assert ws.row_problems(data) == [] and rubric_from_data(data).version == rubric.version
    for row in rows:
        row["held_out"] = row["weight"] > 0
    problems = ws.row_problems(ws.rubric_data_from_rows(rubric.name, rubric.description, rows))
    assert len(problems) == 1 and problems[0]["row"] is None and "held out" in problems[0]["message"]
