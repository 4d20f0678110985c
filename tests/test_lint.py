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
    by_code = {f.code: f for f in found}
    assert codes(found) == ["always-passes", "never-passes"]
    assert by_code["never-passes"].criteria == ["answer"] and by_code["always-passes"].criteria == ["rubric-talk"]
    assert "pitfall" in by_code["always-passes"].message

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
    assert codes(found) == ["never-passes"]
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
    assert set(found) == {"judge-unconfigured", "never-passes", "unscored", "no-pitfall"}
    assert found["never-passes"]["criteria"] == ["a"] and found["unscored"]["criteria"] == ["b"]
    assert "never-passes" in done.stdout
