"""Judges: model verdicts for criteria that have no programmatic check.

A judge is anything with `judge(criterion, *, prompt, text, reference) -> Verdict`. The local
judge asks a loaded model a yes/no question (`judge_messages` below) and compares
the next-token probabilities of "Yes" and "No": the score is 1.0 when P(yes) > P(no), and the
probability is kept. When the two words together get almost no probability mass the model did
not understand the question, and the verdict is None — never 0.

    judge = LocalJudge(model, tokenizer)
    verdict = judge.judge(criterion, prompt=task.prompt, text=chain_text)
    LocalJudge(model, tokenizer, shots={criterion.id: [JudgeShot(prompt, text, verdict=True), ...]})
        # human-judged examples as earlier turns (scoring.judge_shots builds them from disagreements)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Mapping, Protocol, Sequence

from rcsd_core.contracts.messages import Messages, encode_messages
from rcsd_core.contracts.rubric import Criterion

if TYPE_CHECKING:  # torch is imported where it is used, so `rcsd score` starts without loading it
    import torch

MIN_YES_NO_MASS = 0.05  # below this, neither word is what the model meant to say


@dataclass
class Verdict:
    """A judge's answer for one criterion: score (1.0 / 0.0 / None), P(yes), the raw verdict."""
    score: float | None
    probability: float | None
    raw: str
    judge: str

    def to_record(self) -> dict:
        return asdict(self)


class Judge(Protocol):
    name: str

    def judge(self, criterion: Criterion, *, prompt: str, text: str, reference: str | None = None) -> Verdict: ...


@dataclass(frozen=True)
class JudgeShot:
    """A judged example shown before the question: a response and the verdict humans gave it."""
    prompt: str
    text: str
    verdict: bool  # True: "Yes" (meets the criterion; for a pitfall, shows the flaw)


def judge_messages(criterion: Criterion, *, prompt: str, text: str, reference: str | None = None,
                   shots: Sequence[JudgeShot] = ()) -> Messages:
    """A yes/no question: does the response meet the criterion (or, for a pitfall, show the flaw)?

    `shots` come first as earlier question/answer turns (few-shot): each the same question on a
    response humans judged, answered with their verdict.
    """
    messages: Messages = [{"role": "system", "content": "You grade responses strictly. Reply with one word: Yes or No."}]
    for shot in shots:
        messages += [{"role": "user", "content": _question(criterion, shot.prompt, shot.text, None)},
                     {"role": "assistant", "content": "Yes" if shot.verdict else "No"}]
    messages.append({"role": "user", "content": _question(criterion, prompt, text, reference)})
    return messages


def _question(criterion: Criterion, prompt: str, text: str, reference: str | None) -> str:
    ask = ("Does the response show this flaw" if criterion.is_pitfall else "Does the response meet this criterion")
    context = f"Task:\n{prompt.strip()}\n\n" if prompt else ""
    if reference is not None:
        context += f"Reference answer:\n{reference.strip()}\n\n"
    return (f"{context}Response:\n{text.strip()}\n\n"
            f"{ask}? {criterion.label}: {criterion.description.strip()}\n"
            "Reply Yes or No.")


def yes_no_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """Single-token spellings of yes and no (with and without a leading space, any case)."""
    def ids(words: list[str]) -> list[int]:
        found = set()
        for w in words:
            encoded = tokenizer.encode(w, add_special_tokens=False)
            if len(encoded) == 1:
                found.add(encoded[0])
        return sorted(found)

    return ids(["Yes", " Yes", "yes", " yes", "YES"]), ids(["No", " No", "no", " no", "NO"])


def verdict_from_logits(logits: torch.Tensor, yes_ids: list[int], no_ids: list[int], *,
                        name: str = "local") -> Verdict:
    """Turn next-token logits (V,) into a verdict; too little yes/no mass gives score None."""
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    p_yes = float(probs[yes_ids].sum())
    p_no = float(probs[no_ids].sum())
    raw = f"P(yes)={p_yes:.4f} P(no)={p_no:.4f}"
    # NaN logits, too little mass on yes/no, or an exact tie: no verdict — None, never 0
    if not math.isfinite(p_yes + p_no) or p_yes + p_no < MIN_YES_NO_MASS:
        return Verdict(score=None, probability=None, raw=raw + " (no usable verdict)", judge=name)
    p = p_yes / (p_yes + p_no)
    if p == 0.5:
        return Verdict(score=None, probability=p, raw=raw + " (tie)", judge=name)
    return Verdict(score=1.0 if p > 0.5 else 0.0, probability=p, raw=raw, judge=name)


class LocalJudge:
    """Yes/no judging with a loaded causal LM."""

    def __init__(self, model, tokenizer, *, name: str = "local",
                 shots: Mapping[str, Sequence[JudgeShot]] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.shots = dict(shots or {})  # criterion id -> few-shot examples (scoring.judge_shots)
        self.yes_ids, self.no_ids = yes_no_token_ids(tokenizer)
        if not self.yes_ids or not self.no_ids:
            raise ValueError("this tokenizer has no single-token Yes/No; the local judge cannot use it")

    def judge(self, criterion: Criterion, *, prompt: str, text: str, reference: str | None = None) -> Verdict:
        import torch

        ids = encode_messages(self.tokenizer, judge_messages(criterion, prompt=prompt, text=text, reference=reference,
                                                             shots=self.shots.get(criterion.id, ())))
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([ids], device=device)).logits[0, -1]
        return verdict_from_logits(logits, self.yes_ids, self.no_ids, name=self.name)
