"""Judge disagreements become few-shot examples, and the judge–human kappa before and after.

For one judged criterion of reviewed chains: the judge scores every chain; the chains where it
differs from the majority human verdict (ties left out) become few-shot examples labelled with
the human verdict (`disagreement_shots`); then the judge with those examples scores the other
chains again. Both kappas are measured on the same held-out chains — the ones not used as
examples — so the "after" figure is not read off the examples it was shown.

    result = judge_before_after(make_judge, criterion, chains, ratings, max_shots=4)
    # make_judge(shots) -> a Judge (e.g. lambda shots: LocalJudge(model, tok, shots={cid: shots}))
    # result: {"shots": [...chain ids], "held_out": n, "before": {kappa, f1, ...}, "after": {...}, "note"}

`ratings` is {chain_id: {reviewer: 1.0 | 0.0}} for the criterion (scoring.agreement.latest_ratings).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from rcsd_core.contracts.rubric import Criterion
from rcsd_core.scoring.agreement import judge_agreement, majority
from rcsd_core.scoring.judges import Judge, JudgeShot


def judge_scores(judge: Judge, criterion: Criterion, chains: Sequence[dict]) -> dict[str, float | None]:
    return {c["id"]: judge.judge(criterion, prompt=str(c.get("prompt") or ""), text=c.get("text") or "",
                                 reference=c.get("reference")).score for c in chains}


def disagreement_shots(chains: Sequence[dict], ratings: Mapping[str, Mapping[str, float]],
                       scores: Mapping[str, float | None], max_shots: int) -> list[tuple[str, JudgeShot]]:
    """(chain id, shot) for the first `max_shots` chains where the judge's verdict differs from the
    majority human verdict; the shot carries the human verdict."""
    out = []
    for chain in chains:
        human = majority((ratings.get(chain["id"]) or {}).values())
        auto = scores.get(chain["id"])
        if human is None or auto is None or (auto >= 0.5) == (float(human) >= 0.5):
            continue
        out.append((chain["id"], JudgeShot(prompt=str(chain.get("prompt") or ""), text=chain.get("text") or "",
                                           verdict=float(human) >= 0.5)))
        if len(out) == max_shots:
            break
    return out


def judge_before_after(make_judge: Callable[[Sequence[JudgeShot]], Judge], criterion: Criterion,
                       chains: Sequence[dict], ratings: Mapping[str, Mapping[str, float]], *,
                       max_shots: int = 4) -> dict:
    """Judge–human agreement of the judge without and with the disagreement shots, on the held-out chains."""
    rated = [c for c in chains if ratings.get(c["id"])]
    before_all = judge_scores(make_judge(()), criterion, rated)
    picked = disagreement_shots(rated, ratings, before_all, max_shots)
    used = {cid for cid, _ in picked}
    held_out = [c for c in rated if c["id"] not in used]
    items = {c["id"]: ratings[c["id"]] for c in held_out}
    before = judge_agreement(items, {c["id"]: before_all[c["id"]] for c in held_out})
    notes = []
    if picked:
        after_scores = judge_scores(make_judge([shot for _, shot in picked]), criterion, held_out)
        after = judge_agreement(items, after_scores)
    else:
        after_scores, after = {}, None
        notes.append("the judge agrees with the majority on every chain: no disagreement to learn from")
    return {"criterion": criterion.id, "shots": [cid for cid, _ in picked], "held_out": len(held_out),
            "before": before, "after": after, "after_scores": after_scores, "note": "; ".join(notes)}
