"""Readiness verdict from a signal report: go / weak / too weak on hand-made reports whose answer is
known, and the Train page showing the verdict of the chosen rubric's newest report."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from pathlib import Path

from rcsd_core.design.readiness import readiness
from rcsd_core.studio import workspace as ws

APP = Path(__file__).resolve().parent.parent / "app.py"


def row(student, teacher, weight=1, ci=None):
    gap = teacher - student
    ci = ci or [gap - 0.1, gap + 0.1]
    signal = ci[0] > 0 or ci[1] < 0
    return {"student": student, "teacher": teacher, "gap": gap, "ci": ci, "signal": signal, "weight": weight,
            "helps": None if not signal else (gap > 0) == (weight > 0)}


def report(**criteria):
    return {"criteria": criteria, "tasks": 16, "samples": 4, "model": "smollm2-135m-instruct",
            "rubric": "grade-school-math"}


def test_go_names_the_criteria_with_signal():
    v = readiness(report(**{"final-answer-line": row(0.0, 0.33, 3, [0.22, 0.45]),
                            "correct-answer": row(0.0, 0.03, 5, [-0.02, 0.09])}))
    assert v["level"] == "go" and "1 criterion" in v["headline"]
    assert "final-answer-line +0.33 [+0.22, +0.45]" in v["detail"] and "correct-answer" not in v["detail"]


def test_too_weak_when_the_base_passes_almost_nothing_and_the_teacher_is_no_better():
    v = readiness(report(a=row(0.0, 0.02, 3), b=row(0.05, 0.05, 2), pitfall=row(0.5, 0.5, -1)))
    assert v["level"] == "too_weak" and "0.03" in v["detail"]  # (0.00 + 0.05) / 2 over positive criteria
    assert any("stronger model" in step for step in v["next"])


def test_weak_when_the_base_passes_some_but_nothing_has_signal_and_wrong_direction_is_said():
    v = readiness(report(a=row(0.5, 0.55, 3), b=row(0.4, 0.1, 2, [-0.45, -0.15])))
    assert v["level"] == "weak" and "b the wrong way" in v["detail"]
    assert any("rcsd ablate" in step for step in v["next"])


def test_a_pitfall_the_teacher_avoids_is_a_go():
    v = readiness(report(a=row(0.0, 0.0, 3), talk=row(0.6, 0.1, -2, [-0.7, -0.3])))
    assert v["level"] == "go" and "talk" in v["detail"]


@pytest.mark.parametrize("level, rows, box", [
    ("go", {"final-answer-line": row(0.0, 0.33, 3, [0.22, 0.45])}, "success"),
    ("too_weak", {"final-answer-line": row(0.0, 0.0, 3)}, "error"),
])
def test_train_page_shows_the_verdict_of_the_newest_report(tmp_path, monkeypatch, level, rows, box):
    home = ws.ensure_workspace(tmp_path / "ws")
    monkeypatch.setenv("RCSD_HOME", str(home))

    def page():
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.session_state["rubric"] = "grade-school-math"
        at.switch_page("pages/train.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    assert any("no signal report" in str(i.value) for i in page().info)
    version = ws.current_version(home, "grade-school-math")
    ws.save_signal_report(home, {**report(**rows), "rubric_version": version})
    at = page()
    shown = [str(e.value) for e in getattr(at, box)]
    assert any(s.startswith("Readiness") and readiness(report(**rows))["headline"].split(":")[0] in s for s in shown)
