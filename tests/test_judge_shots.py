"""Judge disagreements as few-shot examples: which chains become shots (with the human verdict),
that they reach the judge's prompt as earlier turns, and that before/after kappa are measured on
the same held-out chains (hand-counted with a scripted judge)."""

from __future__ import annotations

import pytest

from rcsd_core.contracts.rubric import Criterion
from rcsd_core.scoring.judge_shots import disagreement_shots, judge_before_after
from rcsd_core.scoring.judges import JudgeShot, LocalJudge, Verdict, judge_messages

CRITERION = Criterion(id="polite", description="The response is polite.", weight=1)


class Scripted:
    """Says yes when the text contains 'please'; with shots, copies a shot's verdict for its exact text
    and otherwise says yes for 'thanks' too (what it learned)."""
    name = "scripted"

    def __init__(self, shots):
        self.shots = list(shots)

    def judge(self, criterion, *, prompt, text, reference=None):
        yes = "please" in text or (bool(self.shots) and "thanks" in text)
        return Verdict(1.0 if yes else 0.0, None, "", self.name)


CHAINS = [{"id": f"c{i}", "prompt": "p", "text": t} for i, t in enumerate(
    ["please", "thanks a lot", "go away", "please now", "thanks", "many thanks", "no"])]
# human majority: c0 pass, c1 pass, c2 fail, c3 pass, c4 pass, c5 pass, c6 fail
RATINGS = {"c0": {"a": 1.0}, "c1": {"a": 1.0, "b": 1.0}, "c2": {"a": 0.0}, "c3": {"a": 1.0}, "c4": {"a": 1.0},
           "c5": {"a": 1.0, "b": 1.0}, "c6": {"a": 0.0, "b": 0.0}}


def test_disagreements_become_shots_with_the_human_verdict():
    scores = {"c0": 1.0, "c1": 0.0, "c2": 0.0, "c3": 1.0, "c4": 0.0, "c5": 0.0, "c6": 0.0}
    shots = disagreement_shots(CHAINS, RATINGS, scores, max_shots=2)
    assert shots == [("c1", JudgeShot("p", "thanks a lot", True)), ("c4", JudgeShot("p", "thanks", True))]


def test_before_and_after_on_the_same_held_out_chains():
    result = judge_before_after(Scripted, CRITERION, CHAINS, RATINGS, max_shots=1)
    assert result["shots"] == ["c1"] and result["held_out"] == 6
    # held out c0 c2 c3 c4 c5 c6, human 1 0 1 1 1 0. Before: 1 0 1 0 0 0 → tp 2, fn 2, tn 2, fp 0;
    # po = 4/6; judge passes 2/6, humans 4/6; pe = 2/6·4/6 + 4/6·2/6 = 16/36; κ = (24/36 − 16/36)/(20/36) = 0.4
    assert result["before"]["kappa"] == pytest.approx(0.4) and result["before"]["n"] == 6
    # After (learned 'thanks'): 1 0 1 1 1 0 → all agree, κ = 1
    assert result["after"]["kappa"] == pytest.approx(1.0) and result["after"]["n"] == 6


def test_no_disagreement_is_said():
    ratings = {"c0": {"a": 1.0}, "c2": {"a": 0.0}}
    result = judge_before_after(Scripted, CRITERION, CHAINS, ratings)
    assert result["shots"] == [] and result["after"] is None and "no disagreement" in result["note"]


def test_shots_reach_the_local_judges_prompt(tiny):
    model, tokenizer = tiny
    shots = [JudgeShot("What is 2+2?", "Four, thanks!", True), JudgeShot("What is 3+3?", "Go away.", False)]
    messages = judge_messages(CRITERION, prompt="What is 1+1?", text="Two.", shots=shots)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == "Yes" and messages[4]["content"] == "No"
    assert "Four, thanks!" in messages[1]["content"] and "Two." in messages[-1]["content"]
    seen = []
    hook = model.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["input_ids"][0].tolist()),
                                           with_kwargs=True)
    try:
        LocalJudge(model, tokenizer).judge(CRITERION, prompt="What is 1+1?", text="Two.")
        LocalJudge(model, tokenizer, shots={"polite": shots}).judge(CRITERION, prompt="What is 1+1?", text="Two.")
        LocalJudge(model, tokenizer, shots={"other": shots}).judge(CRITERION, prompt="What is 1+1?", text="Two.")
    finally:
        hook.remove()
    plain, taught, elsewhere = (tokenizer.decode(ids) for ids in seen)
    assert "Four, thanks!" not in plain and "Four, thanks!" in taught and "Go away." in taught
    assert elsewhere == plain  # shots belong to their criterion only
