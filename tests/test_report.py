"""The HTML report: self-contained (plotly inline, no CDN), escaped, with the numbers stakeholders need."""

from __future__ import annotations

import pandas as pd

from rcsd_core.studio.report import render_report
EVALUATION = {
    "criteria": [{"criterion": "concise", "weight": 1, "before": 0.5, "after": 0.75, "diff": 0.25, "ci_low": 0.05,
                  "ci_high": 0.45, "significant": True, "prompts": 4}],
    "total": {"criterion": "total", "before": 0.2, "after": 0.3, "diff": 0.1, "ci_low": -0.02, "ci_high": 0.22,
              "significant": False, "prompts": 4},
    "prompts": [{"task_id": "a", "prompt": "2+2?", "reference": "4", "before": ["four"], "after": ["Answer: 4"],
                 "before_total": 0.1, "after_total": 1.0}],
}


def test_report_is_self_contained_and_escaped():
    metrics = pd.DataFrame([{"step": 0, "eval/total": 0.2}, {"step": 1, "train/loss": 0.5, "eval/total": 0.3}])
    evaluation = {**EVALUATION, "prompts": [{**EVALUATION["prompts"][0], "prompt": "<script>alert(1)</script>"}]}
    html = render_report(run_id="r1", config={"model": "tiny-random", "method": "rcsd",
                                              "rubric": {"name": "grade-school-math"}},
                         status={"status": "done"}, metrics=metrics, evaluation=evaluation)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert '<script src="http' not in html and html.count("plotly.js v") == 1     # embedded once, no CDN
    assert html.count("Plotly.newPlot") == 4           # before/after, change, eval over steps, loss
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "+0.100 [-0.020, +0.220]" in html            # the headline change with its interval
    assert "grade-school-math" in html and "Answer: 4" in html


def test_report_without_evaluation():
    html = render_report(run_id="r2", config={"model": "m", "method": "opsd", "rubric": "/x/r.yaml"},
                         status={"status": "running"}, metrics=pd.DataFrame(columns=["step"]), evaluation=None)
    assert "has no evaluation yet" in html and "Plotly.newPlot" not in html
