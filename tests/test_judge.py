"""Judge verdicts from next-token logits: probability kept, unusable verdicts null (never 0)."""

from __future__ import annotations

import pytest
import torch

from rcsd_core.scoring.judges import MIN_YES_NO_MASS, LocalJudge, judge_messages, verdict_from_logits, yes_no_token_ids

V = 10
YES, NO = [1, 2], [3]


def logits_with(p: dict[int, float]) -> torch.Tensor:
    """Logits whose softmax puts probability p[i] on token i and spreads the rest over the others."""
    rest = (1 - sum(p.values())) / (V - len(p))
    probs = torch.full((V,), rest)
    for i, v in p.items():
        probs[i] = v
    return probs.log()


def test_yes_wins():
    v = verdict_from_logits(logits_with({1: 0.5, 2: 0.2, 3: 0.1}), YES, NO)
    assert v.score == 1.0 and v.probability == pytest.approx(0.7 / 0.8)
    assert "P(yes)=0.7000" in v.raw and "P(no)=0.1000" in v.raw


def test_no_wins():
    v = verdict_from_logits(logits_with({1: 0.05, 2: 0.0, 3: 0.6}), YES, NO, name="j")
    assert v.score == 0.0 and v.probability == pytest.approx(0.05 / 0.65) and v.judge == "j"


def test_too_little_mass_is_null_not_zero():
    v = verdict_from_logits(logits_with({1: 0.001, 2: 0.0, 3: 0.03}), YES, NO)
    assert v.score is None and v.probability is None and "no usable verdict" in v.raw
    assert MIN_YES_NO_MASS == 0.05


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_are_null(bad):
    logits = torch.zeros(V)
    logits[0] = bad
    assert verdict_from_logits(logits, YES, NO).score is None


def test_exact_tie_is_null():
    v = verdict_from_logits(logits_with({1: 0.2, 3: 0.2}), [1], NO)
    assert v.score is None and v.probability == pytest.approx(0.5)


def test_bf16_logits_work():
    v = verdict_from_logits(logits_with({3: 0.9}).to(torch.bfloat16), YES, NO)
    assert v.score == 0.0


def test_yes_no_ids_of_embedded_tokenizer(tokenizer):
    yes, no = yes_no_token_ids(tokenizer)
    assert yes and no and not set(yes) & set(no)
    assert {tokenizer.decode([i]).strip().lower() for i in yes} == {"yes"}
    assert {tokenizer.decode([i]).strip().lower() for i in no} == {"no"}


def test_judge_prompt_asks_about_the_criterion_or_the_flaw(make_rubric):
    rubric = make_rubric({"id": "clear", "title": "Clear", "description": "Easy to follow.", "weight": 1},
                         {"id": "hedges", "description": "Hedges everything.", "weight": -1})
    good = judge_messages(rubric.criteria[0], prompt="Q?", text="A.", reference="R")
    user = good[-1]["content"]
    assert "Does the response meet this criterion? Clear: Easy to follow." in user
    assert "Task:\nQ?" in user and "Reference answer:\nR" in user and "Response:\nA." in user
    flaw = judge_messages(rubric.criteria[1], prompt="", text="A.")[-1]["content"]
    assert "Does the response show this flaw?" in flaw and "Task:" not in flaw and "Reference" not in flaw


def test_local_judge_on_tiny_random_is_null_never_zero(tiny, make_rubric):
    # near-uniform logits put ~1e-4 on yes/no: the judge must abstain, not fail the criterion
    model, tokenizer = tiny
    rubric = make_rubric({"id": "clear", "description": "Easy to follow.", "weight": 1})
    verdict = LocalJudge(model, tokenizer, name="tiny").judge(rubric.criteria[0], prompt="2+2?", text="4")
    assert verdict.score is None and verdict.judge == "tiny" and verdict.raw.startswith("P(yes)=")


def test_local_judge_follows_the_model(tiny, make_rubric):
    # a model whose last-position logits favour "No" must give 0.0 with P(yes) < 0.5
    model, tokenizer = tiny
    yes, no = yes_no_token_ids(tokenizer)

    class Biased(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids):
            logits = torch.zeros(1, input_ids.shape[1], len(tokenizer))
            logits[0, -1, no[0]] = 20.0
            logits[0, -1, yes[0]] = 18.0
            return type("Out", (), {"logits": logits})()

    rubric = make_rubric({"id": "clear", "description": "Easy to follow.", "weight": 1})
    verdict = LocalJudge(Biased(), tokenizer).judge(rubric.criteria[0], prompt="q", text="t")
    assert verdict.score == 0.0 and verdict.probability == pytest.approx(1 / (1 + 2.718281828 ** 2), rel=1e-3)
