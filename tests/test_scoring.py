"""Scoring: per-criterion scores, the total formula with pitfalls and nulls, references, summaries."""

from __future__ import annotations

import math

import pytest

from rcsd_core.scoring.judges import Verdict
from rcsd_core.scoring.scores import score_chain, score_text, summarize_scores, total_score


@pytest.fixture
def rubric(make_rubric):
    return make_rubric(
        {"id": "fmt", "weight": 3, "check": {"type": "regex", "pattern": r"(?m)^Answer:"}},
        {"id": "correct", "weight": 5, "check": {"type": "answer_match"}},
        {"id": "short", "weight": 2, "check": {"type": "max_words", "limit": 5}},
        {"id": "mentions-rubric", "weight": -4, "check": {"type": "contains", "terms": ["rubric"]}},
        {"id": "clear", "weight": 1},                                        # judged: null without a judge
    )


# ---------------------------------------------------------------------------- total formula

def test_total_is_weighted_mean_over_scored_positive_weights(rubric):
    scores = {"fmt": 1.0, "correct": 0.0, "short": 1.0, "mentions-rubric": 0.0, "clear": None}
    assert total_score(rubric, scores) == pytest.approx((3 + 2) / (3 + 5 + 2))


def test_pitfall_present_subtracts_and_can_go_below_zero(rubric):
    scores = {"fmt": 0.0, "correct": 0.0, "short": 1.0, "mentions-rubric": 1.0, "clear": None}
    assert total_score(rubric, scores) == pytest.approx((2 - 4) / 10)
    assert total_score(rubric, scores) < 0


def test_pitfall_weight_is_not_in_the_denominator(rubric):
    perfect = {"fmt": 1.0, "correct": 1.0, "short": 1.0, "mentions-rubric": 0.0, "clear": 1.0}
    assert total_score(rubric, perfect) == 1.0


def test_null_criteria_drop_out_of_numerator_and_denominator(rubric):
    scores = {"fmt": 1.0, "correct": None, "short": 0.0, "mentions-rubric": None, "clear": None}
    assert total_score(rubric, scores) == pytest.approx(3 / 5)
    assert total_score(rubric, {"fmt": 1.0}) == 1.0                           # missing ids are unscored


def test_total_is_null_without_a_scored_positive_criterion(rubric):
    assert total_score(rubric, {c.id: None for c in rubric.criteria}) is None
    assert total_score(rubric, {"mentions-rubric": 1.0}) is None            # only a pitfall scored
    assert total_score(rubric, {"mentions-rubric": 0.0}) is None


def test_fractional_scores_count_by_value(rubric):
    assert total_score(rubric, {"fmt": 0.5, "clear": 1.0}) == pytest.approx((1.5 + 1) / 4)


# ---------------------------------------------------------------------------- chains

def test_score_text_end_to_end(rubric):
    scores, verdicts = score_text(rubric, "4 + 3 = 7\nAnswer: 7", reference="7")
    assert scores == {"fmt": 1.0, "correct": 1.0, "short": 0.0, "mentions-rubric": 0.0, "clear": None}
    assert verdicts == {}


def test_pitfall_scores_one_when_present(rubric):
    scores, _ = score_text(rubric, "Per the rubric:\nAnswer: 7", reference="7")
    assert scores["mentions-rubric"] == 1.0
    result = score_chain(rubric, {"id": "c", "text": "Per the rubric:\nAnswer: 7", "reference": "7"})
    assert result.total == pytest.approx((3 + 5 + 2 - 4) / 10)


def test_chain_reference_wins_over_tasks_file(rubric):
    tasks = {"t1": "8"}
    own = score_chain(rubric, {"id": "c", "task_id": "t1", "text": "Answer: 7", "reference": "7"}, task_references=tasks)
    assert own.scores["correct"] == 1.0
    from_task = score_chain(rubric, {"id": "c", "task_id": "t1", "text": "Answer: 7"}, task_references=tasks)
    assert from_task.scores["correct"] == 0.0
    null_ref = score_chain(rubric, {"id": "c", "task_id": "t1", "text": "Answer: 8", "reference": None},
                           task_references=tasks)
    assert null_ref.scores["correct"] == 1.0                                 # an explicit null falls back
    nothing = score_chain(rubric, {"id": "c", "task_id": "t9", "text": "Answer: 8"}, task_references=tasks)
    assert nothing.scores["correct"] is None


def test_numeric_chain_reference(rubric):
    assert score_chain(rubric, {"id": "c", "text": "Answer: 1,000", "reference": 1000}).scores["correct"] == 1.0


def test_record_matches_the_scores_contract(rubric):
    record = score_chain(rubric, {"id": "c1", "text": "Answer: 7", "reference": "7"}).to_record()
    assert set(record) == {"id", "scores", "total"}
    assert record["id"] == "c1" and set(record["scores"]) == {c.id for c in rubric.criteria}


class FakeJudge:
    name = "fake"

    def __init__(self, score):
        self.score = score
        self.calls = []

    def judge(self, criterion, *, prompt, text, reference=None):
        self.calls.append((criterion.id, prompt, text, reference))
        return Verdict(score=self.score, probability=None if self.score is None else 0.9, raw="raw", judge=self.name)


def test_judge_scores_only_criteria_without_a_check(rubric):
    judge = FakeJudge(1.0)
    result = score_chain(rubric, {"id": "c", "task_id": "t", "text": "Answer: 7"}, task_references={"t": "7"},
                         task_prompts={"t": "What is 4+3?"}, judge=judge)
    assert judge.calls == [("clear", "What is 4+3?", "Answer: 7", "7")]
    assert result.scores["clear"] == 1.0
    record = result.to_record()
    assert record["judge"]["clear"] == {"score": 1.0, "probability": 0.9, "raw": "raw", "judge": "fake"}


def test_unusable_judge_verdict_stays_null_and_keeps_raw(rubric):
    result = score_chain(rubric, {"id": "c", "text": "Answer: 7"}, judge=FakeJudge(None))
    assert result.scores["clear"] is None
    assert result.to_record()["judge"]["clear"]["raw"] == "raw"


def test_judge_check_type_is_judged(make_rubric):
    rubric = make_rubric({"id": "a", "weight": 1, "check": {"type": "judge"}})
    assert score_chain(rubric, {"id": "c", "text": "x"}).scores == {"a": None}
    assert score_chain(rubric, {"id": "c", "text": "x"}, judge=FakeJudge(0.0)).total == 0.0


# ---------------------------------------------------------------------------- summary

def test_summary_table(rubric):
    results = [score_chain(rubric, {"id": str(i), "text": t, "reference": "7"})
               for i, t in enumerate(["Answer: 7", "Answer: 8 says the rubric and more words here", "nothing"])]
    table = summarize_scores(rubric, results).set_index("criterion")
    assert table.loc["fmt", "pass_rate"] == pytest.approx(2 / 3)
    assert table.loc["correct", "mean"] == pytest.approx(1 / 3)
    assert table.loc["clear", "null"] == 3 and table.loc["clear", "scored"] == 0
    assert table.loc["clear", "pass_rate"] is None or math.isnan(table.loc["clear", "pass_rate"])
    totals = [r.total for r in results]
    assert table.loc["total", "mean"] == pytest.approx(sum(totals) / 3)
    # records (dicts) summarise the same as ChainScore objects
    again = summarize_scores(rubric, [r.to_record() for r in results]).set_index("criterion")
    assert again.loc["fmt", "pass_rate"] == table.loc["fmt", "pass_rate"]


def test_arithmetic_rubric_on_a_good_and_a_bad_chain(arith_rubric):
    good = score_chain(arith_rubric, {"id": "g", "text": "16 + 3 = 19\nAnswer: 19", "reference": "19"})
    assert good.total == 1.0
    bad = score_chain(arith_rubric, {"id": "b", "text": "Following the rubric criteria, it is about 20.",
                                     "reference": "19"})
    assert bad.scores == {"final-answer-line": 0.0, "correct-answer": 0.0, "shows-equation": 0.0, "concise": 1.0,
                          "restates-rubric": 1.0, "equations-true": None}
    assert bad.total == pytest.approx((1 - 2) / 11)
