"""Which evaluation the Results page shows, and what to say when two evaluations disagree.

A run has up to two views of "did it get better": the round's own evaluations (`eval/total` in
metrics.jsonl at step 0 and every `eval_every` steps, on `eval_tasks` prompts × `eval_samples`
chains with `eval_seed`) and the before/after job (eval.json: base vs adapter on `eval_prompts`
prompts × `samples` chains with its own `seed`). They sample different chains — often different
prompts and seeds — so on a few prompts they can point different ways. The page says which one it
shows, with its size and seed, and why they may differ, instead of leaving a green headline beside
a flat curve.

    notes = evaluation_notes(evaluation, metrics, config)   # lines for st.caption / st.info
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def in_round_change(metrics: pd.DataFrame) -> dict | None:
    """The round's own eval total at its first and last evaluated steps, or None when it never evaluated."""
    if metrics is None or metrics.empty or "eval/total" not in metrics:
        return None
    evaluated = metrics.dropna(subset=["eval/total"])
    if evaluated.empty:
        return None
    first, last = evaluated.iloc[0], evaluated.iloc[-1]
    return {"first_step": int(first["step"]), "first": float(first["eval/total"]),
            "last_step": int(last["step"]), "last": float(last["eval/total"]),
            "steps": [int(s) for s in evaluated["step"]]}


def evaluation_notes(evaluation: dict | None, metrics: pd.DataFrame, config: dict[str, Any]) -> list[str]:
    """Plain sentences: which evaluation is shown, its size and seed, and how it relates to the round's own."""
    notes = []
    own = in_round_change(metrics)
    own_size = (f"{config.get('eval_tasks') or 'all'} eval prompts × {config.get('eval_samples')} chains, "
                f"seed {config.get('eval_seed', 0)}")
    if own:
        steps = ", ".join(str(s) for s in own["steps"])
        notes.append(f"The round's own evaluation ({own_size}) at steps {steps}: eval total "
                     f"{own['first']:.3f} → {own['last']:.3f}.")
    if evaluation is None:
        if own:
            notes.append("No before/after evaluation of the adapter yet: the curve below is the round's own.")
        return notes
    total = evaluation.get("total") or {}
    job_size = (f"{evaluation.get('eval_prompts')} eval prompts × {evaluation.get('samples')} chains, "
                f"seed {evaluation.get('seed')}")
    step = evaluation.get("adapter_step")
    notes.insert(0, f"Shown: base vs adapter{f' of step {step}' if step else ''} on {job_size}.")
    diff, low, high = total.get("diff"), total.get("ci_low"), total.get("ci_high")
    if diff is None or low is None or high is None:
        return notes
    noise = low <= 0 <= high
    if noise:
        notes.append(f"The change {diff:+.3f} has a 95% interval [{low:+.3f}, {high:+.3f}] that includes zero: "
                     "it is not distinguishable from noise on this many prompts.")
    if own:
        own_diff = own["last"] - own["first"]
        disagree = _sign(own_diff) != _sign(diff)
        smaller = (evaluation.get("eval_prompts") or 0) < (config.get("eval_tasks") or math.inf)
        if disagree or smaller:
            why = []
            if smaller:
                why.append(f"this evaluation used fewer prompts ({evaluation.get('eval_prompts')} against "
                           f"{config.get('eval_tasks')})")
            if evaluation.get("seed") != config.get("eval_seed", 0):
                why.append("another seed")
            why.append("each samples its own chains")
            notes.append(f"The round's own evaluation moved {own_diff:+.3f} and this one {diff:+.3f}"
                         f"{' — in the other direction' if disagree else ''}: " + ", ".join(why) + ".")
    return notes


def _sign(value: float, tolerance: float = 1e-9) -> int:
    return 0 if abs(value) <= tolerance else (1 if value > 0 else -1)
