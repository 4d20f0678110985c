"""Pure chart builders: score grid, pass rates, metric panels, before/after rows from eval.json."""

from __future__ import annotations

import pandas as pd

from rcsd_core.studio import charts
from rcsd_core.contracts.rubric import load_rubric
from rcsd_core.studio.workspace import SAMPLES_DIR

RUBRIC = load_rubric(SAMPLES_DIR / "arithmetic.yaml")


def record(i, context, concise, pitfall, total):
    return {"id": f"t{i}:{context}:0", "task_id": f"t{i}", "context": context, "total": total,
            "scores": {"final-answer-line": 0.0, "correct-answer": None, "shows-equation": 1.0, "concise": concise,
                       "restates-rubric": pitfall}}


RECORDS = [record(0, "student", 1.0, 0.0, 0.1), record(1, "student", 0.0, 1.0, -0.1),
           record(0, "teacher", 1.0, 0.0, 0.3), record(1, "teacher", 1.0, 0.0, 0.3)]


def test_score_grid_and_colours():
    grid = charts.score_grid(RECORDS, RUBRIC)
    assert list(grid.columns) == ["chain", "task", "context", "total", "final-answer-line", "correct-answer",
                                  "shows-equation", "concise", "restates-rubric", "equations-true"]
    assert len(grid) == 4
    assert charts.cell_colour(1.0) == charts.PASS and charts.cell_colour(0.0) == charts.FAIL
    assert charts.cell_colour(None) == charts.NULL and charts.cell_colour(float("nan")) == charts.NULL
    assert charts.cell_colour(1.0, pitfall=True) == charts.FAIL      # the flaw is present
    html = charts.style_score_grid(grid, RUBRIC).to_html()
    assert charts.FAIL in html and charts.PASS in html and charts.NULL in html and "✓" in html


def test_pass_rates_student_vs_teacher():
    rates = charts.pass_rates(RECORDS, RUBRIC).set_index(["context", "criterion"])
    assert rates.loc[("student", "concise"), "pass_rate"] == 0.5
    assert rates.loc[("teacher", "concise"), "pass_rate"] == 1.0
    assert pd.isna(rates.loc[("student", "correct-answer"), "pass_rate"])
    assert rates.loc[("student", "correct-answer"), "null"] == 2
    fig = charts.pass_rate_figure(RECORDS, RUBRIC)
    assert [t.name for t in fig.data] == ["student", "teacher"]
    assert list(fig.data[0].x) == [c.id for c in RUBRIC.criteria]


def test_metric_figures_only_panels_with_data():
    metrics = pd.DataFrame([{"step": 0, "eval/total": 0.1},
                            {"step": 1, "train/loss": 0.5, "train/divergence": 0.5, "criterion/concise": 0.5},
                            {"step": 2, "train/loss": 0.4, "train/divergence": 0.4, "criterion/concise": 1.0,
                             "eval/total": 0.2}])
    figs = charts.metric_figures(metrics)
    assert list(figs) == ["loss", "divergence", "eval", "criteria"]
    assert list(figs["loss"].data[0].x) == [1, 2]                     # NaN rows dropped per series
    assert charts.metric_figures(pd.DataFrame(columns=["step"])) == {}
    assert charts.eval_totals_figure(metrics).data[0].name == "total"
    assert charts.eval_totals_figure(metrics.drop(columns="eval/total")) is None


EVALUATION = {
    "criteria": [{"criterion": "concise", "weight": 1, "before": 0.5, "after": 0.75, "diff": 0.25, "ci_low": 0.05,
                  "ci_high": 0.45, "significant": True, "prompts": 4}],
    "total": {"criterion": "total", "before": 0.2, "after": 0.3, "diff": 0.1, "ci_low": -0.02, "ci_high": 0.22,
              "significant": False, "prompts": 4},
    "prompts": [{"task_id": "a", "prompt": "2+2?", "reference": "4", "before": ["four", "4"], "after": ["Answer: 4"],
                 "before_total": 0.1, "after_total": 1.0}],
}


def test_before_after_rows_and_figures():
    rows = charts.before_after_rows(EVALUATION)
    assert list(rows["criterion"]) == ["concise", "total"]
    assert rows.iloc[0]["delta_ci"] == (0.05, 0.45) and bool(rows.iloc[0]["significant"])
    assert not rows.iloc[1]["significant"]
    assert [t.name for t in charts.before_after_figure(rows).data] == ["before", "after"]
    change = charts.change_figure(rows)
    assert list(change.data[0].error_x.array) == [0.2, 0.12000000000000001] or \
        [round(v, 6) for v in change.data[0].error_x.array] == [0.2, 0.12]
    pairs = charts.prompt_pairs(EVALUATION)
    assert pairs.iloc[0][["before", "after", "after_total"]].tolist() == ["four", "Answer: 4", 1.0]
