"""Two rubric versions scored side by side on the same chains, with agreement against the human
verdicts: hand-counted pass rates, changed verdicts and kappa, and criteria only one version has."""

from __future__ import annotations

import pytest

from rcsd_core.contracts.rubric import rubric_from_data
from rcsd_core.scoring.versions import compare_versions


def rubric(pattern: str, extra: bool = False):
    criteria = [{"id": "answer-line", "title": "Answer line", "description": "ends with Answer: <n>", "weight": 1,
                 "check": {"type": "regex", "pattern": pattern}}]
    if extra:
        criteria.append({"id": "short", "title": "Short", "description": "at most 6 words", "weight": 1,
                         "check": {"type": "max_words", "limit": 6}})
    return rubric_from_data({"name": "r", "description": "d", "criteria": criteria})


CHAINS = [{"id": "c1", "text": "Answer: 4"}, {"id": "c2", "text": "answer: 4"}, {"id": "c3", "text": "it is 4"},
          {"id": "c4", "text": "ANSWER: 7 and then many more words here"}]


def test_side_by_side_by_hand():
    old = rubric(r"^Answer: \d+$")             # case-sensitive: c1 only
    new = rubric(r"(?i)^answer: \d+", extra=True)  # any case: c1, c2, c4
    # reviewers: c1 pass, c2 pass, c3 fail, c4 pass (two reviewers on c4, one each elsewhere)
    rows = [{"chain_id": c, "reviewer": r, "criterion_scores": {"answer-line": v}}
            for c, r, v in [("c1", "a", 1.0), ("c2", "a", 1.0), ("c3", "b", 0.0), ("c4", "a", 1.0), ("c4", "b", 1.0)]]
    table = compare_versions(CHAINS, old, new, rows).set_index("criterion")
    line = table.loc["answer-line"]
    assert line["pass_old"] == pytest.approx(1 / 4) and line["pass_new"] == pytest.approx(3 / 4)
    assert line["scored"] == 4 and line["changed"] == 2 and line["n_human"] == 4
    # old vs majority: tp 1 (c1), fn 2 (c2, c4), tn 1 (c3): po 1/2, pe = 1/4·3/4 + 3/4·1/4 = 3/8, κ = (1/8)/(5/8) = 0.2
    assert line["kappa_old"] == pytest.approx(0.2) and line["f1_old"] == pytest.approx(2 / 4)
    # new agrees on all four: κ 1, F1 1
    assert line["kappa_new"] == pytest.approx(1.0) and line["f1_new"] == pytest.approx(1.0)
    short = table.loc["short"]
    assert short["pass_old"] is None and short["pass_new"] == pytest.approx(3 / 4)
    assert "not in the old version" in short["note"] and "no human verdicts" in short["note"]
