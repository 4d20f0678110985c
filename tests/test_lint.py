"""Rubric lint: each finding fires on a rubric or chain set crafted for it, and not otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rcsd_core.design.lint import findings_table, lint_rubric
from rcsd_core.contracts.rubric import load_rubric, rubric_from_data
from rcsd_core.scoring.scores import ChainScore

ROOT = Path(__file__).resolve().parent.parent


def make(criteria, **extra):
    return rubric_from_data({"name": "r", "criteria": criteria, **extra})


def crit(cid, description, weight=1, check=None, title=""):
    c = {"id": cid, "description": description, "weight": weight, "title": title}
    if check:
        c["check"] = check
    return c


REGEX = {"type": "regex", "pattern": "x"}
CLEAN = [crit("answer", "Ends with an Answer line.", 3, REGEX, "Answer line"),
         crit("equation", "Shows an equation with digits.", 2, REGEX, "Equation"),
         crit("rubric-talk", "Talks about the grading.", -1, REGEX, "Rubric talk")]


def codes(findings):
    return sorted(f.code for f in findings)


def test_clean_rubric_has_no_findings():
    assert lint_rubric(make(CLEAN)) == []
    assert lint_rubric(load_rubric(ROOT / "sample_rubrics" / "arithmetic.yaml")) == []


def test_near_duplicates():
    rubric = make(CLEAN + [crit("answer-2", "Ends with the answer line!", 1, REGEX, "Answer line")])
    found = [f for f in lint_rubric(rubric) if f.code == "near-duplicate"]
    assert len(found) == 1 and found[0].criteria == ["answer", "answer-2"] and found[0].severity == "warning"
    assert not [f for f in lint_rubric(rubric, similarity_threshold=0.999) if f.code == "near-duplicate"]


def test_equal_weights_and_no_pitfall():
    rubric = make([crit("a", "One thing.", 2, REGEX), crit("b", "A different matter entirely.", 2, REGEX)])
    assert codes(lint_rubric(rubric)) == ["equal-weights", "no-pitfall"]
    single = make([crit("a", "One thing.", 2, REGEX), crit("p", "A flaw.", -1, REGEX)])
    assert codes(lint_rubric(single)) == []


def test_judge_criteria_without_a_judge():
    rubric = make([crit("a", "Ends with an answer.", 3, REGEX), crit("clear", "Reads clearly.", 1),
                   crit("p", "Rambles.", -1, REGEX)])
    found = lint_rubric(rubric)
    assert codes(found) == ["judge-unconfigured"] and found[0].criteria == ["clear"] and found[0].severity == "warning"
    assert lint_rubric(rubric, judge_configured=True) == []
    only_judged = make([crit("clear", "Reads clearly.", 1), crit("p", "Rambles.", -1, REGEX)])
    assert lint_rubric(only_judged)[0].severity == "error"


def chains_from(columns: dict[str, list]):
    n = len(next(iter(columns.values())))
    return [{"id": f"c{i}", "scores": {k: v[i] for k, v in columns.items()}} for i in range(n)]


def test_discrimination_and_correlation_on_scored_chains():
    rubric = make(CLEAN)
    mixed = [1.0, 0.0] * 5
    chains = chains_from({"answer": [0.0] * 10, "equation": mixed, "rubric-talk": [1.0] * 10})
    found = lint_rubric(rubric, chains)
    assert codes(found) == ["saturated", "saturated"]
    none, every = found
    assert none.criteria == ["answer"] and "none of 10" in none.message
    assert every.criteria == ["rubric-talk"] and "all 10" in every.message and "pitfall" in every.message

    correlated = chains_from({"answer": mixed, "equation": mixed, "rubric-talk": [0.0, 0.0, 1.0, 1.0, 0.0] * 2})
    found = lint_rubric(rubric, correlated)
    assert codes(found) == ["correlated"] and found[0].criteria == ["answer", "equation"]
    assert "+1.00" in found[0].message
    anti = chains_from({"answer": mixed, "equation": [1 - v for v in mixed],
                        "rubric-talk": [0.0, 1.0, 1.0] * 3 + [0.0]})
    assert [f.criteria for f in lint_rubric(rubric, anti) if f.code == "correlated"] == [["answer", "equation"]]
    loose = chains_from({"answer": mixed, "equation": [1.0, 0.0, 0.0, 1.0] * 2 + [1.0, 0.0],
                         "rubric-talk": [0.0, 1.0, 1.0] * 3 + [0.0]})
    assert lint_rubric(rubric, loose) == []


def test_few_chains_and_unscored():
    rubric = make(CLEAN)
    few = chains_from({"answer": [0.0] * 3, "equation": [0.0] * 3, "rubric-talk": [0.0] * 3})
    assert codes(lint_rubric(rubric, few)) == ["few-chains"]  # too few to call anything constant
    nulls = chains_from({"answer": [None] * 10, "equation": [1.0, 0.0] * 5, "rubric-talk": [0.0, 1.0, 1.0] * 3 + [0.0]})
    assert codes(lint_rubric(rubric, nulls)) == ["unscored"]


def test_accepts_chain_score_objects_and_table():
    rubric = make(CLEAN)
    objs = [ChainScore(f"c{i}", {"answer": 0.0, "equation": float(i % 2), "rubric-talk": float(i % 3 == 0)}, 0.0)
            for i in range(10)]
    found = lint_rubric(rubric, objs)
    assert codes(found) == ["saturated"]
    assert list(findings_table(found).columns) == ["severity", "code", "criteria", "message"]


def test_cli_lint_scores_chains_and_writes_findings(tmp_path):
    rubric = tmp_path / "r.yaml"
    rubric.write_text("name: r\ncriteria:\n"
                      "  - {id: a, description: has x, weight: 2, check: {type: contains, terms: [x]}}\n"
                      "  - {id: b, description: is clear, weight: 1}\n")
    chains = tmp_path / "c.jsonl"
    chains.write_text("".join(json.dumps({"id": f"c{i}", "text": "no match here"}) + "\n" for i in range(8)))
    out = tmp_path / "f.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "rcsd_core.cli", "lint", "--rubric", str(rubric), "--chains",
                           str(chains), "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = {f["code"]: f for f in json.loads(out.read_text())}
    assert set(found) == {"judge-unconfigured", "saturated", "unscored", "no-pitfall"}
    assert found["saturated"]["criteria"] == ["a"] and found["unscored"]["criteria"] == ["b"]
    assert "saturated" in done.stdout and "none of 8" in found["saturated"]["message"]


# ---------------------------------------------------------------------------- polarity, leak


from rcsd_core.contracts.tasks import Task  # noqa: E402

POLAR = [crit("because", "Explains the cause using the word because.", 2,
              {"type": "contains", "terms": ["because"]}, "Cause"),
         crit("hedges", "Pitfall - hedges with words like maybe or perhaps.", -1,
              {"type": "contains", "terms": ["maybe", "perhaps"]}, "Hedging"),
         crit("answer", "Gives the right answer.", 3, {"type": "answer_match", "pattern": "(?i)the answer is (\\w+)"})]


def long_ref(text):
    return f"{text} and that is the full explanation in a few more words."


def test_polarity_names_the_pitfall_the_reference_hits_and_its_tasks():
    rubric = make(POLAR)
    tasks = [Task(id="a", prompt="Why?", reference=long_ref("It rains because clouds cool, maybe")),
             Task(id="b", prompt="Why?", reference=long_ref("It rains because clouds cool")),
             Task(id="c", prompt="Why?", reference=long_ref("Perhaps it rains because clouds cool")),
             Task(id="short", prompt="Why?", reference="perhaps"),          # a bare value: not an answer
             Task(id="ideal", prompt="Why?", reference="x", ideal_completion=long_ref("Clouds cool, so it rains"))]
    found = [f for f in lint_rubric(rubric, tasks=tasks) if f.code == "polarity"]
    by = {f.criteria[0]: f for f in found}
    assert set(by) == {"hedges", "because"}  # answer_match is never held against the reference itself
    assert by["hedges"].tasks == ["a", "c"] and "2 of 4" in by["hedges"].message and "pitfall" in by["hedges"].message
    assert by["because"].tasks == ["ideal"] and by["hedges"].severity == "warning"


def test_polarity_error_when_every_ideal_answer_contradicts_and_worked_examples_count():
    rubric = make(POLAR, examples=[{"prompt": "Why?", "answer": "Maybe because of rain."}])
    tasks = [Task(id="a", prompt="Why?", reference=long_ref("Maybe because of rain"))]
    found = [f for f in lint_rubric(rubric, tasks=tasks) if f.code == "polarity"]
    assert len(found) == 1 and found[0].criteria == ["hedges"] and found[0].severity == "error"
    assert "example 1" in found[0].message and found[0].tasks == ["a"] and "sign" in found[0].message
    clean = [Task(id="a", prompt="Why?", reference=long_ref("It rains because clouds cool"))]
    assert [f for f in lint_rubric(make(POLAR), tasks=clean) if f.code == "polarity"] == []


def test_leak_counts_teacher_and_student_chains_echoing_a_criterion():
    rubric = make(POLAR)
    quote = "explains the cause using the word because"
    chains = [{"id": "t1", "context": "teacher", "text": f"I must say it {quote}. It rains.", "prompt": "Why?"},
              {"id": "t2", "context": "teacher", "text": "It rains because clouds cool.", "prompt": "Why?"},
              {"id": "s1", "context": "student", "text": f"Well, {quote.upper()}!", "prompt": "Why?"},
              {"id": "s2", "context": "student", "text": quote, "prompt": f"Repeat: {quote}"}]  # the prompt says it
    found = [f for f in lint_rubric(rubric, chains) if f.code == "leak"]
    assert len(found) == 1 and found[0].criteria == ["because"] and found[0].chains == ["s1", "t1"]
    assert "1 of 2 student chains; 1 of 2 teacher chains" in found[0].message
    assert [f for f in lint_rubric(rubric, chains[1:2]) if f.code == "leak"] == []


def test_cli_lint_polarity_and_leak(tmp_path):
    rubric = tmp_path / "r.yaml"
    rubric.write_text("name: r\ncriteria:\n"
                      "  - {id: cause, description: explains the cause using the word because, weight: 2, "
                      "check: {type: contains, terms: [because]}}\n"
                      "  - {id: hedge, description: hedges with maybe, weight: -1, check: {type: contains, terms: [maybe]}}\n")
    tasks = tmp_path / "t.jsonl"
    tasks.write_text(json.dumps({"id": "q1", "prompt": "Why?", "reference": long_ref("Maybe it rains because")}) + "\n")
    chains = tmp_path / "c.jsonl"
    chains.write_text(json.dumps({"id": "c1", "task_id": "q1", "context": "teacher",
                                  "text": "It explains the cause using the word because."}) + "\n")
    out = tmp_path / "f.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "rcsd_core.cli", "lint", "--rubric", str(rubric), "--tasks",
                           str(tasks), "--chains", str(chains), "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=120)
    found = {f["code"]: f for f in json.loads(out.read_text())}
    assert done.returncode == 0, done.stderr  # polarity on one ideal answer is a warning
    assert found["polarity"]["criteria"] == ["hedge"] and found["polarity"]["tasks"] == ["q1"]
    assert found["leak"]["criteria"] == ["cause"] and found["leak"]["chains"] == ["c1"]
