"""Ablation report: scripted teachers whose source of pull is known get the right verdict; the
report has the issue's JSON shape; attribution moves the share it should; the CLI writes it
(tiny-random) and refuses bad input with exit 2 and no file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rcsd_core.contracts.rubric import load_rubric
from rcsd_core.contracts.tasks import Task
from rcsd_core.design.ablation import (VARIANTS, ablation_table, attribution_table, decide_verdict, run_ablation,
                                       variant_messages)

ROOT = Path(__file__).resolve().parent.parent
RUBRIC = ROOT / "sample_rubrics" / "arithmetic.yaml"
OTHER = ROOT / "sample_rubrics" / "science.yaml"
TASKS = ROOT / "sample_rubrics" / "arithmetic.tasks.jsonl"
FORMAT_TEXT = 'exactly "Answer: <number>"'  # words of the final-answer-line criterion's description


def has_examples(messages) -> bool:
    return any(m["role"] == "assistant" for m in messages)


def system(messages) -> str:
    return messages[0]["content"] if messages[0]["role"] == "system" else ""


class ScriptedBackend:
    """A model that writes the "Answer: <n>" line in 3 of 4 samples when `follows(messages)`, and
    never otherwise; its teacher diverges from the student by 0.5 per token when it follows, else 0.1."""

    def __init__(self, follows):
        self.follows = follows
        self.calls = 0

    def sample(self, prompts, *, n, max_new_tokens, seed, progress=None):
        self.calls += 1
        out = []
        for messages in prompts:
            rows = []
            for i in range(n):
                text = "3 + 4 = 7\nAnswer: 7" if self.follows(messages) and i % 4 != 3 else "It is seven, 3 + 4 = 7."
                rows.append({"text": text, "n_tokens": len(text.split()), "finished": True})
            out.append(rows)
            if progress:
                progress(n)
        return out

    def divergences(self, student, teacher, chains):
        return [{"mean": (0.5 if self.follows(t) else 0.1) + 0.001 * (i % 3), "n_tokens": 10}
                for i, t in enumerate(teacher)]


TASK_LIST = [Task(id=f"t{i}", prompt=f"What is 3 + 4? ({i})", reference="7") for i in range(6)]


def ablate(follows, **kw):
    backend = ScriptedBackend(follows)
    other = load_rubric(OTHER)
    report = run_ablation(load_rubric(RUBRIC), TASK_LIST, backend, samples=4, max_new_tokens=16, seed=0,
                          shuffled=(other, "sample rubric 'science-explainer'"), **kw)
    return report, backend


def test_examples_follower_gets_the_examples_verdict():
    report, _ = ablate(has_examples, attribution=False)
    assert report["cause"] == "examples", report["verdict"]
    assert "worked examples" in report["verdict"]
    row = report["variants"]["examples_only"]["criteria"]["final-answer-line"]
    assert (row["student"], row["teacher"], row["gap"]) == (0.0, 0.75, 0.75) and row["signal"]
    assert not report["variants"]["criteria_only"]["criteria"]["final-answer-line"]["signal"]
    assert report["variants"]["generic"]["divergence"] == pytest.approx(0.1 + 0.001 * (0 + 1 + 2) / 3, abs=1e-3)
    assert report["variants"]["full"]["divergence"] > report["variants"]["criteria_only"]["divergence"]


def test_criteria_follower_gets_the_criteria_verdict():
    report, _ = ablate(lambda m: FORMAT_TEXT in system(m), attribution=False)
    assert report["cause"] == "criteria", report["verdict"]
    assert "criteria text" in report["verdict"] and "not specific" not in report["verdict"]
    assert report["criterion_causes"] == {"final-answer-line": "criteria", "correct-answer": "criteria"}
    # the shuffled teacher read the science rubric's criteria: no pull
    assert not report["variants"]["shuffled"]["criteria"]["final-answer-line"]["signal"]
    assert report["variants"]["shuffled"]["criteria"]["final-answer-line"]["vs_full"]["signal"]


def test_any_system_rubric_gets_the_generic_verdict_and_a_deaf_teacher_none():
    report, _ = ablate(lambda m: "A strong answer meets these criteria" in system(m), attribution=False)
    assert report["cause"] == "generic" and "generic" in report["verdict"]
    deaf, _ = ablate(lambda m: False, attribution=False)
    assert deaf["cause"] == "none" and deaf["verdict"].startswith("No pull")


def test_report_shape_and_shared_student_chains():
    report, backend = ablate(has_examples, attribution=False)
    assert set(report["variants"]) == set(VARIANTS)
    for v in report["variants"].values():
        assert isinstance(v["divergence"], float)
        for row in v["criteria"].values():
            assert {"student", "teacher", "gap", "ci"} <= set(row)
    assert backend.calls == 1 + len(VARIANTS)  # the student sampled once, shared by every variant
    students = {v["criteria"]["final-answer-line"]["student"] for v in report["variants"].values()}
    assert students == {0.0}
    assert len(report["student_chains"]) == 24 and report["shuffled_source"].startswith("sample rubric")
    json.dumps(report, allow_nan=False)
    table = ablation_table(report)
    assert len(table) == len(VARIANTS) * (6 + 1)  # five trained criteria, the held-out one, the total


def test_attribution_moves_the_left_out_criterion():
    """A teacher that writes the answer line only when the format criterion is in its context: leaving
    that criterion out moves all its gap and all the extra divergence; leaving another out moves nothing."""
    report, backend = ablate(lambda m: FORMAT_TEXT in system(m))
    by = {a["criterion"]: a for a in report["attribution"]}
    assert set(by) == {"final-answer-line", "correct-answer", "shows-equation", "concise", "restates-rubric"}
    fmt = by["final-answer-line"]
    assert fmt["own_gap_share"] == pytest.approx(1.0)
    # mass: full 0.5..0.502 per token, without it 0.1..0.102: share moved = 0.4 / 0.501
    assert fmt["divergence_mass"]["share"] == pytest.approx(0.4 / 0.501, rel=1e-3)
    assert fmt["divergence_mass"]["signal"]
    assert by["concise"]["divergence_mass"]["share"] == pytest.approx(0.0)
    assert by["concise"]["gap"]["final-answer-line"]["share"] == pytest.approx(0.0)
    assert list(attribution_table(report)["left_out"])[0] == "final-answer-line"


def test_variant_contexts_are_what_they_claim():
    rubric, other = load_rubric(RUBRIC), load_rubric(OTHER)
    task = TASK_LIST[0]
    full = variant_messages("full", task, rubric)
    assert FORMAT_TEXT in system(full) and has_examples(full)
    assert FORMAT_TEXT in system(variant_messages("criteria_only", task, rubric))
    assert not has_examples(variant_messages("criteria_only", task, rubric))
    ex = variant_messages("examples_only", task, rubric)
    assert has_examples(ex) and "criteria" not in system(ex).replace("the criteria or", "")
    assert FORMAT_TEXT not in system(ex)
    shuffled = variant_messages("shuffled", task, rubric, shuffled=other)
    assert FORMAT_TEXT not in system(shuffled) and other.criteria[0].description.strip() in system(shuffled)
    assert [m["content"] for m in shuffled if m["role"] == "assistant"] == [e.answer.strip() for e in rubric.examples]
    generic = variant_messages("generic", task, rubric)
    assert FORMAT_TEXT not in system(generic) and not has_examples(generic)


def test_verdict_mixed_and_combination():
    def row(signal, helps=True):
        return {"signal": signal, "helps": helps if signal else None}

    variants = {
        "full": {"criteria": {"a": row(True), "b": row(True)}},
        "criteria_only": {"criteria": {"a": row(True), "b": row(False)}},
        "examples_only": {"criteria": {"a": row(False), "b": row(True)}},
        "generic": {"criteria": {"a": row(False), "b": row(False)}},
    }
    cause, text, per = decide_verdict(variants)
    assert cause == "mixed" and per == {"a": "criteria", "b": "examples"}
    assert "criteria for a" in text and "examples for b" in text
    variants["examples_only"]["criteria"]["b"] = row(False)
    variants["criteria_only"]["criteria"]["a"] = row(False)
    assert decide_verdict(variants)[0] == "combination"


def _rcsd(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rcsd_core.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_writes_the_report(tmp_path):
    out = tmp_path / "a.json"
    done = _rcsd("ablate", "--rubric", str(RUBRIC), "--tasks", str(TASKS), "--model", "tiny-random", "--limit", "1",
                 "--samples", "1", "--max-new-tokens", "3", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert set(report["variants"]) == set(VARIANTS) and isinstance(report["verdict"], str)
    assert report["shuffled_source"] == "sample rubric 'clinical-question' (sample_rubrics/clinical.yaml)"
    assert len(report["attribution"]) == 5
    assert "verdict:" in done.stdout


def test_cli_bad_input_exits_2_without_output(tmp_path):
    out = tmp_path / "a.json"
    done = _rcsd("ablate", "--rubric", str(RUBRIC), "--tasks", str(TASKS), "--model", "tiny-random",
                 "--shuffled-rubric", str(RUBRIC), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 2 and "shuffled" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


# ---------------------------------------------------------------------------- in the studio


def test_html_export_carries_the_ablation_lint_watch_and_chains():
    from rcsd_core.design.lint import lint_rubric
    from rcsd_core.studio.report import render_report

    report, _ = ablate(has_examples)
    report["student_chains"][0]["text"] = "<script>alert(1)</script> 3 + 4 = 7"
    rubric = load_rubric(RUBRIC)
    leaky = {"id": "c9", "context": "teacher", "text": "The very last line of the answer is exactly it."}
    findings = lint_rubric(rubric, [leaky], tasks=[Task(id="q", prompt="p", reference="x")])
    design = {"ablation": report, "signal": None, "lint": [f.to_record() for f in findings],
              "lint_chains": {"c9": leaky["text"]}}
    page = render_report(run_id="r", config={"model": "m", "method": "rcsd", "rubric": {"name": "grade-school-math"}},
                         status={"status": "done"}, metrics=None, evaluation=None, design=design,
                         alert="trained rose while held-out equations-true fell")
    assert "The teacher&#x27;s pull comes from the worked examples" in page
    assert "Does the rubric matter?" in page and page.count("plotly-graph-div") >= 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "teacher · examples_only" in page and "Leaving one criterion out" in page
    assert ">leak<" in page and "The very last line of the answer is exactly it." in page
    assert "Alert: trained rose while held-out equations-true fell" in page


def test_preview_page_runs_the_ablation_and_shows_its_verdict(tmp_path, monkeypatch):
    from test_pages import by_label, open_page, sample_tiny, settle

    from rcsd_core.studio import workspace as ws

    home = ws.ensure_workspace(tmp_path / "ws")
    monkeypatch.setenv("RCSD_HOME", str(home))
    at = open_page("pages/preview.py", rubric="grade-school-math")
    sample_tiny(at)
    by_label(at.button, "Run the ablation").click().run()
    settle(at, timeout=240)
    assert not at.exception, [e.value for e in at.exception]
    saved = ws.latest_ablation_report(home, "grade-school-math")
    assert saved is not None and set(saved["variants"]) == set(VARIANTS) and saved["tasks"] == 4
    assert saved["shuffled_source"].startswith("workspace rubric")
    assert any(str(i.value).startswith("Verdict\\: ") for i in at.info), [str(i.value)[:80] for i in at.info]
    tables = [e.value for e in at.dataframe if "variant" in e.value.columns]
    assert tables and set(tables[0]["variant"]) == set(VARIANTS)
